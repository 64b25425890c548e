"""ToCaConfig rejects bad values at construction, naming the field and the allowed range."""
import pytest

from toca_compile import ToCaConfig


@pytest.mark.parametrize("field, value, allowed", [
    ("interval", 0, ">= 1"), ("interval", 2.5, ">= 1"), ("interval", True, ">= 1"),
    ("ratio", -0.1, "[0.0, 1.0]"), ("ratio", 1.5, "[0.0, 1.0]"), ("ratio", float("nan"), "[0.0, 1.0]"),
    ("staleness_weight", -1, ">= 0.0"), ("staleness_weight", float("inf"), "finite"), ("seed", -3, "[0, "),
    ("seed", 2**64, "[0, "), ("taylor_order", 1.0, "1 or 2"), ("spatial_cell", 1e30, ">= 1"),
    ("preset", ["dit-ddim-50"], "one of"), ("mode", ["toca"], "one of"), ("max_shapes", 0, ">= 1"),
    ("max_branches", 1.5, ">= 1"), ("spatial_bonus", float("inf"), "finite"),
    ("score", "entropy?", "one of"), ("compiler", "tvm", "one of"),
])
def test_bad_values_raise_value_error_naming_field(field, value, allowed):
    with pytest.raises(ValueError) as info:
        ToCaConfig(**{field: value})
    assert f"ToCaConfig.{field}" in str(info.value) and allowed in str(info.value)


def test_replace_checks_field_names_and_values():
    config = ToCaConfig().replace(interval=5)
    assert config.interval == 5
    with pytest.raises(ValueError, match="no field"):
        ToCaConfig().replace(intervals=5)
    with pytest.raises(ValueError, match="ToCaConfig.ratio"):
        ToCaConfig().replace(ratio=2)

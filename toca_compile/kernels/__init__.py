"""What the rewritten graphs call: row gathers and scatters, cache fills, the Taylor forecast
(``rows``) and the token scores (``scores``).

Plain functions of torch ops, so Inductor traces through them and fuses them into the
neighbouring kernels, and the eager executor runs them as they are.
"""

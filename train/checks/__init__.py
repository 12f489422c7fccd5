"""Stage 6 — operational checks: speed, load, failure and the browser, each writing a report.

Benchmarks of the engine and of a training step (``bench``, ``bench_engine``, ``bench_sft``), many listeners at
once (``load_test``), a crash in the middle of a turn (``crash_check``), the app in a real browser
(``app_check``), the GPU path (``gpu_check``), and new tracks found by their own words after cold start
(``cold_start_check``).
"""

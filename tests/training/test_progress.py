"""The trainer's step timer and the progress bar that shows its figures."""

from llp_jax.training import progress


def test_step_timer_excludes_restarted_time_and_bar_shows_figures(monkeypatch):
    clock = iter([100.0, 101.0, 105.0, 106.0, 107.0])  # start, step 2, restart, step 6, 6
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    timer = progress.StepTimer(0)
    assert timer.lap(2) == 0.5  # 2 steps in 1 s
    timer.restart()  # e.g. after an evaluation: its 4 s are not step time
    assert timer.lap(6) == 0.25
    assert timer.lap(6) is None  # no step ran
    bar = progress.ProgressBar(total_steps=10, initial_step=0)
    bar.show(6, loss=1.0, tokens_per_s=2048.0, step_s=0.25, lr=None)
    assert bar._bar.n == 6 and bar._bar.postfix == "loss=1, tok/s=2,048, step=250ms"
    bar.close()

"""The terminal display of `app create --wait`: build steps from either builder's log."""

from __future__ import annotations

import io

from orun.cli.progress import StepProgress, parse_step


def test_parse_step_lines() -> None:
    assert parse_step("Step 3/12 : RUN pip install -r requirements.txt") == \
        (3, 12, "RUN pip install -r requirements.txt")
    assert parse_step("#7 [2/4] COPY . .") == (2, 4, "COPY . .")
    assert parse_step("#9 [builder 3/5] RUN go build") == (3, 5, "RUN go build")
    for other in (" ---> Running in 1234", "#7 DONE 0.1s", "built x in 1.0s",
                  "Steps 1/2 : x", "Collecting flask"):
        assert parse_step(other) is None


def test_one_line_per_step_with_its_time() -> None:
    now = [100.0]
    out = io.StringIO()
    view = StepProgress(out, 60, clock=lambda: now[0])
    for line, advance in (("building img from Dockerfile", 0.0), ("Step 1/2 : FROM base", 0.5),
                          (" ---> abc", 0.0), ("Step 2/2 : RUN make", 1.0),
                          ("compiling a very long line of output " * 3, 2.0),
                          ("Successfully built abc", 0.0), ("built img in 3.5s", 0.0)):
        view.line(line)
        now[0] += advance
    view.close()
    final = [ln.rpartition("\r")[2].replace("\033[K", "") for ln in out.getvalue().split("\n")]
    assert final == ["building img from Dockerfile", "step 1/2    0.5s  FROM base",
                     "step 2/2    3.0s  RUN make", "built img in 3.5s", ""]
    # the running step showed its last output line, cut to the width
    drawn = out.getvalue().split("\r")
    assert any("| compiling a very long" in d and d.endswith("…\033[K") for d in drawn)
    assert all(len(d.replace("\033[K", "").rstrip("\n")) <= 59 for d in drawn)
    assert view.elapsed() == 3.5


def test_failure_detail_starts_at_the_failing_step() -> None:
    log = ["Step 1/2 : FROM base", " ---> abc", "Step 2/2 : RUN make", "cc: error", "failed"]
    assert StepProgress.failure_detail(log) == ["Step 2/2 : RUN make", "cc: error", "failed"]
    unhealthy = ["Traceback (most recent call last):", "KeyError: 'PORT'"]
    assert StepProgress.failure_detail(unhealthy) == unhealthy


def test_buildkit_output_is_the_tail() -> None:
    out = io.StringIO()
    view = StepProgress(out, 200, clock=lambda: 0.0)
    for line in ("#5 [2/3] RUN pip install flask", "#5 0.512 Collecting flask",
                 "#5 DONE 1.2s", "#6 [3/3] COPY . .", "#6 CACHED"):
        view.line(line)
    view.close()
    drawn = out.getvalue().split("\r")
    assert any(d.startswith("step 2/3    0.0s  RUN pip install flask  | Collecting flask")
               for d in drawn)
    assert not any("DONE" in d or "CACHED" in d for d in drawn)

"""Showing results: the live line, the summary table, ``compare``, and the HTML report.

The HTML report is one self-contained file: the plots are SVG drawn here (no plotting
dependency, nothing fetched), a percentile plot on the usual "nines" axis and throughput (and
errors) per second.
"""

from __future__ import annotations

import html
import io
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .result import PERCENTILES, Result

if TYPE_CHECKING:
    from types import TracebackType

    from .hist import Histogram
    from .runner import Progress

__all__ = ["LiveLine", "Row", "compare", "format_ns", "render_compare", "render_html", "summary"]


def format_ns(ns: float) -> str:
    """``1234567`` → ``"1.23ms"``: three significant digits, a unit a person reads."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g}{unit}"
    return f"{ns:.0f}ns"


def _pname(p: float) -> str:
    return "max" if p >= 100 else f"p{p:g}"


# -- live line -----------------------------------------------------------------------------------


class LiveLine:
    """``elapsed · req/s · errors · p99`` refreshed on stderr, only when stderr is a TTY."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal
        self._live: Live | None = None
        self._last: tuple[float, int] = (0.0, 0)
        self._rate = 0.0

    def __enter__(self) -> LiveLine:
        if self.enabled:
            self._live = Live(
                Text("starting…"), console=self.console, transient=True, refresh_per_second=4
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def __call__(self, p: Progress) -> None:
        if self._live is None:
            return
        now = time.monotonic()
        last_t, last_n = self._last
        if now - last_t >= 0.4:  # several workers report in bursts: rate over >= 0.4 s
            if last_t:
                self._rate = (p.requests - last_n) / (now - last_t)
            self._last = (now, p.requests)
        rate = self._rate
        style = "bold red" if p.errors else ""
        phase = "warm-up" if p.warming else f"{p.elapsed:6.1f}s"
        line = Text.assemble(
            (f"{phase}  ", "dim"),
            f"{p.requests:>10,} req  {rate:>10,.0f} req/s  ",
            (f"{p.errors:,} errors", style),
            f"  p99 {format_ns(p.latency.percentile(99))}",
        )
        self._live.update(line)


# -- summary -------------------------------------------------------------------------------------


def _title(r: Result) -> str:
    model = (
        f"open model, {r.rate:,.0f} req/s over {r.connections} connections"
        if r.model == "open"
        else f"closed model, {r.connections} connections"
    )
    where = r.target.get("address", "")
    machines = f", {len(r.sources)} machines" if len(r.sources) > 1 else ""
    return (
        f"aionet bench {r.protocol} {where}: {model}, {r.workers} worker"
        f"{'s' if r.workers != 1 else ''}{machines}, {r.duration:.2f}s measured"
        + (f" (warm-up {r.warmup:g}s excluded)" if r.warmup else "")
    )


def _latency_row(table: Table, label: str, hist: Histogram) -> None:
    table.add_row(
        label, *(format_ns(hist.percentile(p)) for p in PERCENTILES), format_ns(hist.mean)
    )


def summary(r: Result, console: Console, *, uncorrected: bool = False) -> None:
    """Print the final report of a run (or a merge)."""
    console.print(_title(r), highlight=False, soft_wrap=True)
    if r.interrupted:
        console.print("[yellow]interrupted: results so far[/]")
    err = r.error_count
    err_style = "bold red" if err else "green"
    console.print(
        f"requests {r.requests:,}   throughput {r.throughput:,.1f} req/s   "
        f"errors [{err_style}]{err:,}[/]",
        highlight=False,
    )
    if r.rate and r.duration >= 1 and r.throughput < 0.95 * r.rate:
        console.print(
            f"[yellow]achieved {r.throughput:,.0f} req/s of the {r.rate:,.0f} asked: the server "
            "or this load generator is saturated (add --workers or connections)[/]"
        )
    table = Table(box=None, pad_edge=False)
    table.add_column("latency")
    for p in PERCENTILES:
        table.add_column(_pname(p), justify="right")
    table.add_column("mean", justify="right")
    if r.uncorrected is not None:
        _latency_row(table, "corrected", r.latency)
        if uncorrected:
            _latency_row(table, "uncorrected", r.uncorrected)
    else:
        _latency_row(table, "", r.latency)
    console.print(table)
    if err:
        errors = Table(box=None, pad_edge=False, title_justify="left")
        errors.add_column("error", style="red")
        errors.add_column("count", justify="right")
        errors.add_column("first seen", overflow="fold")
        for kind, n in sorted(r.errors.items(), key=lambda kv: -kv[1]):
            errors.add_row(kind, f"{n:,}", r.error_details.get(kind, ""))
        console.print(errors)
        console.print(f"[bold red]{err:,} requests failed[/]")


# -- compare -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    metric: str
    base: float
    new: float
    higher_is_better: bool
    regressed: bool

    @property
    def change(self) -> float | None:
        """Relative change, or None when the base is zero."""
        return None if self.base == 0 else (self.new - self.base) / self.base


def _error_rate(r: Result) -> float:
    attempts = r.requests + r.error_count
    return r.error_count / attempts if attempts else 0.0


def compare(base: Result, new: Result, threshold: float = 0.10) -> list[Row]:
    """Deltas of throughput, latency percentiles and error rate; ``regressed`` marks changes
    for the worse beyond ``threshold`` (relative; for the error rate, absolute)."""

    def row(metric: str, b: float, n: float, higher: bool) -> Row:
        if b == 0:
            worse = n > 0 and not higher
        else:
            delta = (n - b) / b
            worse = delta < -threshold if higher else delta > threshold
        return Row(metric, b, n, higher, worse)

    rows = [row("throughput req/s", base.throughput, new.throughput, True)]
    for p in (50.0, 90.0, 99.0, 99.9):
        rows.append(
            row(
                f"latency {_pname(p)}", base.latency.percentile(p), new.latency.percentile(p), False
            )
        )
    b_err, n_err = _error_rate(base), _error_rate(new)
    rows.append(Row("error rate", b_err, n_err, False, n_err > b_err + threshold / 100))
    return rows


def render_compare(rows: list[Row], console: Console, threshold: float) -> None:
    table = Table(box=None, pad_edge=False)
    for col in ("metric", "base", "new", "change", ""):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for r in rows:
        if r.metric.startswith("latency"):
            b, n = format_ns(r.base), format_ns(r.new)
        elif r.metric == "error rate":
            b, n = f"{r.base:.3%}", f"{r.new:.3%}"
        else:
            b, n = f"{r.base:,.1f}", f"{r.new:,.1f}"
        change = "n/a" if r.change is None else f"{r.change:+.1%}"
        flag = "[bold red]REGRESSION[/]" if r.regressed else ""
        table.add_row(r.metric, b, n, change, flag)
    console.print(table)
    bad = [r.metric for r in rows if r.regressed]
    if bad:
        console.print(f"[bold red]regressed beyond {threshold:.0%}: {', '.join(bad)}[/]")
    else:
        console.print(f"no regression beyond {threshold:.0%}")


# -- HTML ----------------------------------------------------------------------------------------


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display), imported only for ``--html``.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'aionet[report]'``).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _svg(figure: Any) -> str:
    """The figure as an inline ``<svg>`` element (no XML prologue, no metadata block)."""
    out = io.StringIO()
    figure.savefig(
        out,
        format="svg",
        bbox_inches="tight",
        metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
    )
    text = out.getvalue()
    return text[text.index("<svg") :]


def _finish(plt: Any, fig: Any, ax: Any, x_label: str, y_label: str) -> str:
    """Labels, grid and legend of a plot, then the figure as inline SVG (and closed)."""
    ax.set_ylim(bottom=0)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(color="#eee")
    ax.legend(loc="upper left")
    try:
        return _svg(fig)
    finally:
        plt.close(fig)


def _nines(fraction: float) -> float:
    """x position on the percentile axis: log10(1 / (1 - p)), capped at 6 nines."""
    return min(6.0, math.log10(1 / max(1e-6, 1 - fraction)))


def percentile_svg(series: list[tuple[str, str, Histogram]]) -> str:
    """Latency by percentile (x: 0, 90, 99, 99.9 … equally spaced), one step line each."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 3.2))
    x_max = 2.0
    for label, color, h in series:
        if not h.total:
            continue
        dist = h.distribution()
        xs, ys, prev = [], [], 0.0
        for frac, v in dist:  # a step: the value holds from the previous fraction to this one
            xs += [_nines(prev), _nines(frac)]
            ys += [v / 1e6, v / 1e6]
            prev = frac
        x_max = max(x_max, math.ceil(max(xs)))
        ax.plot(xs, ys, color=color, linewidth=1.5, label=label)
    ticks = list(range(int(x_max) + 1))
    ax.set_xticks(
        ticks, ["0%" if k == 0 else f"{100 - 10 ** (2 - k):.{max(0, k - 2)}f}%" for k in ticks]
    )
    ax.set_xlim(0, x_max)
    return _finish(plt, fig, ax, "percentile", "latency (ms)")


def timeline_svg(r: Result) -> str:
    """Requests and errors per second of the measurement."""
    plt = _pyplot()
    rows = r.timeline or [[0, 0]]
    fig, ax = plt.subplots(figsize=(7.2, 3.2))
    seconds = list(range(len(rows)))
    ax.plot(seconds, [row[0] for row in rows], color="#1f77b4", linewidth=1.5, label="requests/s")
    ax.plot(seconds, [row[1] for row in rows], color="#d62728", linewidth=1.5, label="errors/s")
    return _finish(plt, fig, ax, "second of the measurement", "per second")


def render_html(r: Result) -> str:
    """A self-contained HTML page: title, numbers, the two plots, the error table."""
    series = [("corrected" if r.uncorrected is not None else "latency", "#1f77b4", r.latency)]
    if r.uncorrected is not None:
        series.append(("uncorrected", "#ff7f0e", r.uncorrected))
    pct_rows = "".join(
        f"<tr><td>{html.escape(label)}</td>"
        + "".join(f"<td>{format_ns(h.percentile(p))}</td>" for p in PERCENTILES)
        + f"<td>{format_ns(h.mean)}</td></tr>"
        for label, _, h in series
    )
    head = "".join(f"<th>{_pname(p)}</th>" for p in PERCENTILES)
    errors = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{n:,}</td>"
        f"<td>{html.escape(r.error_details.get(k, ''))}</td></tr>"
        for k, n in sorted(r.errors.items())
    )
    target = html.escape(str(r.target))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>aionet bench {html.escape(r.protocol)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}
table{{border-collapse:collapse}}td,th{{padding:2px 10px;text-align:right}}
td:first-child{{text-align:left}}.err{{color:#b00}}</style></head><body>
<h1>aionet bench {html.escape(r.protocol)}</h1>
<p>{html.escape(_title(r))}{" — <b>interrupted</b>" if r.interrupted else ""}</p>
<p>target: <code>{target}</code><br>started {
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r.started))
    }, sources: {html.escape(", ".join(r.sources))}</p>
<p>requests <b>{r.requests:,}</b>, throughput <b>{r.throughput:,.1f} req/s</b>,
errors <b class="{"err" if r.error_count else ""}">{r.error_count:,}</b></p>
<table><tr><th>latency</th>{head}<th>mean</th></tr>{pct_rows}</table>
<h2>Latency by percentile</h2>
{percentile_svg(series)}
<h2>Throughput over time</h2>
{timeline_svg(r)}
{
        "<h2>Errors</h2><table><tr><th>kind</th><th>count</th><th>first seen</th></tr>"
        + errors
        + "</table>"
        if errors
        else ""
    }
</body></html>
"""


def to_jsonable(rows: list[Row]) -> list[dict[str, Any]]:
    return [
        {
            "metric": r.metric,
            "base": r.base,
            "new": r.new,
            "change": r.change,
            "regressed": r.regressed,
        }
        for r in rows
    ]

"""Shared plumbing for experiments: config CLI, result store, figure style, progress.

Every experiment module follows one shape (DESIGN.md, "Experiments")::

    @dataclass(frozen=True)
    class Config:            # the paper's settings as defaults
        width: int = 500
        ...
    QUICK = dict(width=50)   # the small preset behind --quick

    def run(cfg, store) -> dict[str, np.ndarray]   # pure; caches pieces via store.cached
    def plot(results, cfg) -> dict[str, Figure]    # no computation

    def main(argv=None):
        return run_experiment("name", Config, QUICK, run, plot, argv)

`run_experiment` parses the command line into a `Config`, loads a finished run when its
config matches (so re-plotting is instant), otherwise calls `run`, saves
`results/<name>/<run>.npz` + `.json` atomically with provenance, and writes the figures
(PNG + PDF) to `paper_figs/` (default settings) or `results/<name>/<run>/` (other settings).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(os.environ.get("THEORY_RESULTS_DIR", REPO_ROOT / "results"))
FIGS_DIR = Path(os.environ.get("THEORY_FIGS_DIR", REPO_ROOT / "paper_figs"))

# --------------------------------------------------------------------------- CLI


def _field_parser(tp: Any) -> tuple[Callable[[str], Any], str]:
    """A string -> value parser for a dataclass field type, and the type's display name."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            parse, name = _field_parser(inner[0])

            def parse_optional(s: str) -> Any:
                return None if s.lower() in ("none", "null") else parse(s)

            return parse_optional, f"{name} or none"
    if origin is tuple:
        elem = args[0] if args else str
        parse_elem, name = _field_parser(elem)

        def parse_tuple(s: str) -> tuple:
            parts = [p for p in s.replace(" ", ",").split(",") if p]
            if not parts:
                raise ValueError("expected a comma-separated list")
            return tuple(parse_elem(p) for p in parts)

        return parse_tuple, f"comma-separated {name}s"
    if tp is bool:

        def parse_bool(s: str) -> bool:
            low = s.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true/false, got {s!r}")

        return parse_bool, "bool"
    if tp in (int, float, str):
        return tp, tp.__name__
    raise TypeError(f"unsupported config field type {tp!r}")


def _argparse_type(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def conv(s: str) -> Any:
        try:
            return parse(s)
        except (ValueError, TypeError) as e:
            raise argparse.ArgumentTypeError(f"expected {name}, got {s!r} ({e})") from None

    conv.__name__ = name
    return conv


def build_parser(name: str, config_cls: type, doc: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one ``--field`` option per dataclass field."""
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{name}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small preset for smoke tests")
    parser.add_argument(
        "--run",
        default=None,
        help="run name under results/<experiment>/ (default: 'default' for the paper's "
        "settings, 'quick' for --quick, else 'custom-<config hash>')",
    )
    parser.add_argument(
        "--force", action="store_true", help="recompute even if a finished run exists"
    )
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="re-plot from saved results; fail if there are none",
    )
    hints = typing.get_type_hints(config_cls)
    group = parser.add_argument_group("config (defaults are the paper's settings)")
    for f in dataclasses.fields(config_cls):
        parse, tname = _field_parser(hints[f.name])
        default = f.default
        helptext = f.metadata.get("help", "")
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=_argparse_type(parse, tname),
            default=argparse.SUPPRESS,  # absent from the namespace unless given
            metavar=tname.upper().replace(" ", "_").replace("-", "_"),
            help=f"{helptext} [{tname}; default: {_fmt(default)}]".strip(),
        )
    return parser


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    return str(v)


def parse_config(
    name: str,
    config_cls: type,
    quick: Mapping[str, Any],
    argv: list[str] | None = None,
    doc: str | None = None,
) -> tuple[Any, argparse.Namespace]:
    """Parse ``argv`` into a config instance.

    Precedence: dataclass defaults < ``--quick`` preset < explicit flags. Invalid values
    (wrong type, or rejected by the dataclass's ``__post_init__``) exit with code 2 and a
    message naming the flag.
    """
    parser = build_parser(name, config_cls, doc)
    ns = parser.parse_args(argv)
    values: dict[str, Any] = dict(quick) if ns.quick else {}
    for f in dataclasses.fields(config_cls):
        if f.name in vars(ns):  # given on the command line (may be None: `--seed none`)
            values[f.name] = getattr(ns, f.name)
    try:
        cfg = config_cls(**values)
    except (ValueError, TypeError) as e:
        parser.error(str(e))  # exits with status 2
    return cfg, ns


def check_positive(**kwargs: float | tuple) -> None:
    """Raise ValueError naming the first non-positive argument (for config validation)."""
    for k, v in kwargs.items():
        vals = v if isinstance(v, tuple) else (v,)
        if not vals or any(not (x > 0) for x in vals):
            raise ValueError(f"--{k.replace('_', '-')} must be positive, got {_fmt(v)}")


# ----------------------------------------------------------------- atomic writes

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    The bytes go to a temporary file in the same directory, are flushed and fsynced, and
    the file is renamed over ``path`` (``os.replace`` is atomic on POSIX). If the process
    dies midway only a ``.tmp`` file is left behind, never a partial ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def save_npz_atomic(path: str | os.PathLike, arrays: Mapping[str, Any]) -> Path:
    """``np.savez`` into ``path`` atomically (see `atomic_write_bytes`)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def save_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default)
    return atomic_write_bytes(path, (text + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# -------------------------------------------------------------------- provenance


def config_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=_json_default))


def config_hash(cfg: Any) -> str:
    text = json.dumps(config_dict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit() -> dict[str, Any]:
    """HEAD's commit and whether the working tree had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return {"commit": commit or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("theory", "jax", "jaxlib", "numpy", "scipy", "matplotlib", "scikit-learn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def device_info() -> dict[str, Any]:
    try:
        import jax

        devs = jax.devices()
        return {
            "platform": devs[0].platform,
            "devices": [str(d) for d in devs],
            "device_kind": devs[0].device_kind,
            "x64": bool(jax.config.jax_enable_x64),
        }
    except Exception as e:  # provenance must never break a run
        return {"error": repr(e)}


def provenance(cfg: Any, wall_time_s: float, name: str, run: str) -> dict[str, Any]:
    return {
        "experiment": name,
        "run": run,
        "config": config_dict(cfg),
        "config_hash": config_hash(cfg),
        "git": git_commit(),
        "versions": library_versions(),
        "device": device_info(),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
        "wall_time_s": wall_time_s,
        "finished_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
    }


# ------------------------------------------------------------------ result store


class ResultStore:
    """``results/<name>/<run>.npz`` + ``<run>.json``, and resumable pieces of a run.

    A long run calls ``store.cached(key, compute)`` for each independent piece (one width,
    one seed, ...). Each finished piece is written atomically to
    ``results/<name>/<run>/pieces-<config hash>/<key>.npz``, so an interrupted run, when
    restarted with the same config, loads the finished pieces and computes only the rest.
    """

    def __init__(self, name: str, run: str, cfg: Any, root: str | os.PathLike | None = None):
        self.name, self.run, self.cfg = name, run, cfg
        self.root = Path(root) if root is not None else RESULTS_DIR
        self.dir = self.root / name
        self.npz = self.dir / f"{run}.npz"
        self.json = self.dir / f"{run}.json"
        self.pieces = self.dir / run / f"pieces-{config_hash(cfg)}"
        self.n_loaded = 0
        self.n_computed = 0

    def cached(self, key: str, compute: Callable[[], Mapping[str, Any]]) -> dict[str, np.ndarray]:
        if not key or any(c in key for c in "/\\") or key.startswith("."):
            raise ValueError(f"piece key must be a plain file name, got {key!r}")
        path = self.pieces / f"{key}.npz"
        if path.exists():
            self.n_loaded += 1
            return load_npz(path)
        arrays = {k: np.asarray(v) for k, v in dict(compute()).items()}
        save_npz_atomic(path, arrays)
        self.n_computed += 1
        return arrays

    def finished(self) -> bool:
        """A complete run with this exact config exists."""
        if not (self.npz.exists() and self.json.exists()):
            return False
        try:
            meta = json.loads(self.json.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return meta.get("config_hash") == config_hash(self.cfg)

    def load(self) -> dict[str, np.ndarray]:
        return load_npz(self.npz)

    def metadata(self) -> dict[str, Any]:
        return json.loads(self.json.read_text())

    def save(self, arrays: Mapping[str, Any], wall_time_s: float) -> dict[str, Any]:
        meta = provenance(self.cfg, wall_time_s, self.name, self.run)
        meta["pieces"] = {"loaded": self.n_loaded, "computed": self.n_computed}
        # The json's presence with a matching hash marks completion: drop the old one first,
        # so a crash between the two renames cannot pair new arrays with an old config.
        with contextlib.suppress(FileNotFoundError):
            self.json.unlink()
        save_npz_atomic(self.npz, arrays)
        save_json_atomic(self.json, meta)
        return meta


# ---------------------------------------------------------------------- figures

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 160,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.6,
    "image.cmap": "viridis",
    "pdf.fonttype": 42,
    "axes.prop_cycle": (
        "cycler('color', ['#0072B2', '#D55E00', '#009E73', '#CC79A7', "
        "'#E69F00', '#56B4E9', '#F0E442', '#000000'])"
    ),
}


def pyplot():
    """matplotlib.pyplot with the headless backend and the project style applied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def save_figure(fig: Any, stem: str, out_dir: str | os.PathLike) -> list[Path]:
    """Save ``fig`` as ``<out_dir>/<stem>.png`` and ``.pdf`` (atomically) and close it."""
    out = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext)
        out.append(atomic_write_bytes(Path(out_dir) / f"{stem}.{ext}", buf.getvalue()))
    pyplot().close(fig)
    return out


# --------------------------------------------------------------------- progress


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """A tqdm progress bar on stderr (hidden when THEORY_NO_PROGRESS is set)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", bool(os.environ.get("THEORY_NO_PROGRESS")))
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


# ------------------------------------------------------------------- the driver


def default_run_name(cfg: Any, config_cls: type, quick: Mapping[str, Any]) -> str:
    """'default' for the paper's settings, 'quick' for the preset, else 'custom-<hash>', so
    a run with other flags never overwrites the paper's results."""
    if cfg == config_cls():
        return "default"
    if cfg == config_cls(**quick):
        return "quick"
    return f"custom-{config_hash(cfg)[:8]}"


def figure_dir(name: str, run: str, cfg: Any, config_cls: type) -> Path:
    """Default-settings runs write the committed figures; anything else stays in results/."""
    if run == "default" and cfg == config_cls():
        return FIGS_DIR
    return RESULTS_DIR / name / run


def run_experiment(
    name: str,
    config_cls: type,
    quick: Mapping[str, Any],
    run: Callable[[Any, ResultStore], Mapping[str, Any]],
    plot: Callable[[Mapping[str, np.ndarray], Any], Mapping[str, Any]],
    argv: list[str] | None = None,
    doc: str | None = None,
) -> Path:
    """Parse the CLI, compute (or load) the results, save them, and write the figures."""
    cfg, ns = parse_config(name, config_cls, quick, argv, doc)
    run_name = ns.run or default_run_name(cfg, config_cls, quick)
    if not run_name or any(c in run_name for c in "/\\") or run_name.startswith("."):
        print(f"error: --run must be a plain name, got {run_name!r}", file=sys.stderr)
        raise SystemExit(2)
    if ns.plot_only and ns.force:
        print("error: --plot-only and --force contradict each other", file=sys.stderr)
        raise SystemExit(2)
    store = ResultStore(name, run_name, cfg)
    if ns.plot_only and not store.finished():
        print(
            f"error: --plot-only: no finished run {store.npz} for this config; run without "
            "--plot-only first",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if store.finished() and not ns.force:
        print(f"[{name}] loading finished run {store.npz}", file=sys.stderr)
        then, now = store.metadata().get("git", {}).get("commit"), git_commit()["commit"]
        if then and now and then != now:
            print(
                f"[{name}] note: these results were computed at commit {then[:10]}, the code "
                f"is now at {now[:10]}; pass --force to recompute",
                file=sys.stderr,
            )
        results = store.load()
    else:
        t0 = time.perf_counter()
        results = {k: np.asarray(v) for k, v in dict(run(cfg, store)).items()}
        wall = time.perf_counter() - t0
        store.save(results, wall)
        print(
            f"[{name}] computed in {wall:.1f} s ({store.n_computed} pieces computed, "
            f"{store.n_loaded} loaded) -> {store.npz}",
            file=sys.stderr,
        )
    out_dir = figure_dir(name, run_name, cfg, config_cls)
    figs = plot(results, cfg)
    for stem, fig in figs.items():
        for p in save_figure(fig, stem, out_dir):
            print(f"[{name}] wrote {p}", file=sys.stderr)
    return out_dir

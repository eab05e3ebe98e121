"""A local table of a benchmark JSON of any shape (what ``mind-edge devices deploy`` prints after the
remote ``mind-edge bench``): the JSON's own fields, flattened, the usual latency/throughput columns first.
Torch-free, dependency-free."""

from __future__ import annotations

import re
from typing import Any


def bench_rows(data: Any) -> tuple[list[str], list[list[str]]]:
    """Columns and rows for a local table of a benchmark JSON (any shape: list of results or one dict)."""
    records = _records(data)
    if not records:
        flat = _flatten(data if isinstance(data, dict) else {"value": data})
        return ["field", "value"], [[k, _fmt(v)] for k, v in list(flat.items())[:60]]
    cols: list[str] = []
    flats = [_flatten(r) for r in records]
    for f in flats:
        for k in f:
            if k not in cols:
                cols.append(k)
    preferred = [c for c in cols if _preferred(c)]
    cols = (preferred or cols)[:12]
    return cols, [[_fmt(f.get(c)) for c in cols] for f in flats]


def _records(data: Any) -> list[dict]:
    if isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
        return data
    if isinstance(data, dict):
        for key in ("results", "runs", "rows", "benchmarks"):
            v = data.get(key)
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                return v
    return []


_PREFERRED = re.compile(
    r"(^|[._])(name|label|backend|variant|status|providers?|precision|batch|threads|tasks|p50|"
    r"p90|p99|mean|median|throughput|images_per_s|ips|peak_rss|model_bytes|energy|power)",
    re.I,
)


def _preferred(col: str) -> bool:
    return bool(_PREFERRED.search(col))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(_flatten(v, key))
            elif isinstance(v, list) and len(v) > 8:
                out[key] = f"[{len(v)} values]"
            else:
                out[key] = v
    else:
        out[prefix or "value"] = d
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


__all__ = ["bench_rows"]

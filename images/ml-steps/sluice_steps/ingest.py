"""ingest: read a CSV/Parquet file (any fsspec URI, HTTP included) or a SQL query into Parquet."""

from __future__ import annotations

import aiohttp
import fsspec
import pandas as pd

from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, Param, StepSpec

SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "oracle")
SPEC = StepSpec(
    name="ingest",
    summary="read a CSV/Parquet file (any fsspec URI, HTTP included) or a SQL query into Parquet",
    params={
        "source": Param("string", "fsspec URI of a CSV/Parquet file, or a SQLAlchemy database URL", required=True),
        "query": Param(("string", "null"), "the SQL query, for a database source"),
        "format": Param(("string", "null"), "csv or parquet (default: from the file name)", choices=("csv", "parquet")),
    },
    outputs={"data": Artifact("Parquet: the rows read")},
    pure=False,
    effects="reads its source (a file, URL or database named by the 'source' param), which no input fingerprints",
)


def _is_sql(source: str) -> bool:
    scheme = source.split("://", 1)[0].split("+", 1)[0] if "://" in source else ""
    return scheme in SQL_SCHEMES


def _read_sql(source: str, query: str | None) -> pd.DataFrame:
    import sqlalchemy as sa

    if not query:
        raise StepError(f"param 'query' is required when source is a database URL ({source.split('://')[0]})")
    try:
        engine = sa.create_engine(source)
    except Exception as exc:
        raise StepError(f"param 'source': {source!r} is not a usable SQLAlchemy URL ({exc})") from None
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text(query), conn)
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise StepError(f"param 'query': the query failed on {source.split('://')[0]}: {detail}") from None
    finally:
        engine.dispose()


def _read_file(source: str, fmt: str | None) -> pd.DataFrame:
    """Every file source goes through fsspec (local, s3://, http(s)://, ...), so errors read the same."""
    if fmt is None:
        fmt = "parquet" if source.endswith((".parquet", ".pq")) else "csv" if source.endswith(".csv") else None
    if fmt not in ("csv", "parquet"):
        raise StepError(f"param 'format': cannot tell the format of {source!r}; set format to csv or parquet")
    try:
        with fsspec.open(source, "rb") as handle:
            return pd.read_csv(handle) if fmt == "csv" else pd.read_parquet(handle)
    except FileNotFoundError:
        raise StepError(f"param 'source': {source} does not exist") from None
    except pd.errors.EmptyDataError:
        raise StepError(f"param 'source': {source} is empty") from None
    except ValueError as exc:
        if "protocol" in str(exc).lower():
            raise StepError(f"param 'source': {source!r} uses an unknown protocol ({exc})") from None
        raise StepError(f"param 'source': {source} could not be read as {fmt}: {exc}") from None
    except (OSError, aiohttp.ClientError) as exc:
        raise StepError(f"param 'source': {source} is unreachable or unreadable: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith(("pyarrow", "fsspec")):
            raise StepError(f"param 'source': {source} could not be read as {fmt}: {exc}") from None
        raise


def run(ctx: StepContext) -> None:
    source = ctx.param("source")
    if not source:
        raise StepError("param 'source' is empty; give a file URI or a database URL")
    frame = _read_sql(source, ctx.param("query")) if _is_sql(source) else _read_file(source, ctx.param("format"))
    if frame.empty:
        raise StepError(f"param 'source': {source} holds no rows")
    ctx.write_parquet("data", frame)
    ctx.metrics.update(rows=len(frame), columns=len(frame.columns))

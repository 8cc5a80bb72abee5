"""`mcp-aggregator search QUERY`: the stored tool index (an operator's view) or a running gateway's finder.

Two sources, chosen by `--url`:

* without it, the LanceDB index in `data_dir/index` (or `search_uri`) as the gateway and
  `mcp-aggregator index` left it. Nothing is connected: full-text answers at once (`--full-text`),
  and hybrid ranking, the default, loads the model first (seconds, not a reconnect of every
  upstream). Every stored tool is searched, with no caller policy: reading the gateway's data
  folder is an operator's action, like reading its audit log.
* with `--url`, the running gateway's `intelligent_tool_finder`, called with the caller's token
  (`--token` or `$MCP_AGGREGATOR_TOKEN`). The gateway ranks only the tools that token may call, so
  this shows a caller exactly what its agent would be shown, and answers fast (the gateway's model
  is loaded).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio

from aggregator.cli.common import TOKEN_VARIABLE
from aggregator.cli.progress import quiet_model_loading
from aggregator.config.logs import configure_logging
from aggregator.config.settings import load_settings

FINDER = "intelligent_tool_finder"
"""The finder's name on /mcp (aggregator.tools.finder.FINDER, not imported here: that loads the index)."""
TOOLS_TABLE = "tools.lance"


def search(args: argparse.Namespace) -> int:
    """Print the best `--top-k` tools for the query, best first, and how they were ranked."""
    if args.url:
        return _ask_gateway(args.url, args.token or os.environ.get(TOKEN_VARIABLE), args.query, args.top_k)
    settings = load_settings(args.config, servers_file=args.servers)
    configure_logging("warning")
    quiet_model_loading()
    uri = settings.search_uri or str(settings.data_dir / "index")
    graphs = settings.data_dir / "encoder"
    return anyio.run(_search_stored, uri, settings.search_model, graphs, args.query, args.top_k, args.full_text)


async def _search_stored(uri: str, model: str | None, graphs: Path, query: str, top_k: int, full_text: bool) -> int:
    from aggregator.search import Embedder, EmbedderUnavailableError, ToolIndex  # LanceDB loads only here
    from aggregator.search.store import ToolStore

    if "://" not in uri and not (Path(uri) / TOOLS_TABLE).exists():
        return _fail(
            f"no tool index at {uri}: run `mcp-aggregator index --config FILE` "
            "(a running gateway also stores it at its first search)"
        )
    store = await ToolStore.open(uri)
    try:
        documents, _ = await store.read_documents()
    finally:
        store.close()
    if not documents:
        return _fail(f"the tool index at {uri} holds no tools: run `mcp-aggregator index --config FILE`")
    embedder = Embedder(model, graph_cache=graphs)
    async with ToolIndex(uri, embedder, load_model=False) as index:
        if not full_text:
            with contextlib.suppress(EmbedderUnavailableError):  # the result's note says so
                await embedder.load()
        result = await index.search(
            query, allowed=frozenset(documents), top_k=top_k, method="full-text" if full_text else "hybrid"
        )
    hits = [(hit.score, hit.name, hit.description) for hit in result.hits]
    _print(f"{uri}: {len(documents)} stored tools, every one (operator view)", result.mode, result.note, hits)
    return 0


def _ask_gateway(url: str, token: str | None, query: str, top_k: int) -> int:
    """The running gateway's finder, as the token's caller: only the tools it may call."""
    import httpx2
    from mcp import Client, MCPError
    from mcp.client.streamable_http import streamable_http_client

    refusals: list[httpx2.Response] = []

    async def remember_refusal(response: httpx2.Response) -> None:
        if response.status_code in (401, 403):
            refusals.append(response)

    async def ask() -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        hooks = {"response": [remember_refusal]}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30.0, event_hooks=hooks) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            return await client.call_tool(FINDER, {"query": query, "top_k": top_k})

    try:
        try:
            result = anyio.run(ask)
        except BaseExceptionGroup as group:  # the client's task group wraps what went wrong
            raise _first_leaf(group) from None
    except (MCPError, httpx2.HTTPError, OSError) as error:
        if refusals:
            return _fail(f"{url} refused the search: {_refusal(refusals[0], token)}")
        if isinstance(error, MCPError):
            return _fail(f"{url} refused the search: {error}")
        return _fail(f"cannot reach the gateway at {url}: {type(error).__name__}: {error}")
    if result.is_error or not isinstance(result.structured_content, dict):
        text = " ".join(getattr(block, "text", "") for block in result.content)
        return _fail(f"{url} refused the search: {text or 'an error without a message'}")
    answer = result.structured_content
    hits = [(float(tool["score"]), str(tool["name"]), str(tool.get("description") or "")) for tool in answer["tools"]]
    _print(f"{url}: the tools this token may call", str(answer["mode"]), answer.get("note"), hits)
    return 0


def _refusal(response: Any, token: str | None) -> str:
    """`401 the token has expired`: the status and the gateway's reason (from WWW-Authenticate), with a hint."""
    challenge = response.headers.get("WWW-Authenticate", "")
    described = re.search(r'error_description="([^"]*)"', challenge)
    if described:
        reason = described.group(1)
    elif response.status_code == 401:
        reason = "a bearer token is required"
    else:
        reason = response.reason_phrase or "forbidden"
    hint = f" (set ${TOKEN_VARIABLE} or pass --token)" if token is None else ""
    return f"{response.status_code} {reason}{hint}"


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _print(source: str, mode: str, note: str | None, hits: Iterable[tuple[float, str, str]]) -> None:
    print(f"{source}; {mode} search")
    if note:
        print(f"  note: {note}")
    hits = list(hits)
    if not hits:
        print("  no tool matches")
    for score, name, description in hits:
        summary = description.splitlines()[0] if description else ""
        print(f"  {score:.3f}  {name}: {summary}")


def _fail(message: str) -> int:
    print(f"mcp-aggregator: {message}", file=sys.stderr)
    return 1

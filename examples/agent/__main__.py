"""Run the example agent against a gateway: `python -m examples.agent [options] TASK`.

    # the demo gateway (`make demo`), the offline scripted model
    python -m examples.agent --gateway http://127.0.0.1:8000/mcp --model scripted "What's the weather in Lisbon?"
    # as the agent itself: OAuth2 client credentials (the secret comes from an environment variable)
    AGENT_CLIENT_SECRET=... python -m examples.agent --issuer https://idp.example.com --client-id weather-agent ...
    # as the signed-in user (after `mcp-aggregator login`)
    python -m examples.agent --use-user-token --model bedrock --region eu-west-1 "..."

The answer goes to stdout; one line per step, and notices, go to stderr. Tokens are never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import httpx2
from mcp import MCPError

from aggregator.config.settings import LoginSettings
from examples.agent.conversation import Model
from examples.agent.errors import AgentError
from examples.agent.gateway import connect
from examples.agent.identity import client_credentials_token, user_token
from examples.agent.loop import DEFAULT_MAX_STEPS, run_agent
from examples.agent.scripted import DEFAULT_SCRIPT, ScriptedModel, load_script

REQUEST_TIMEOUT = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        answer = anyio.run(_run, args)
    except AgentError as error:
        _report(f"error: {error}")
        return 1
    except MCPError as error:
        _report(f"error: the gateway answered {error.code}: {error.message}")
        return 1
    print(answer)
    return 0


async def _run(args: argparse.Namespace) -> str:
    async with httpx2.AsyncClient(timeout=REQUEST_TIMEOUT) as auth_http:
        token = await _bearer(args, auth_http)
    model = _model(args)
    async with connect(args.gateway, token, notify=lambda notice: _report(f"note: {notice}")) as gateway:
        return await run_agent(args.task, model, gateway, report=_report, max_steps=args.max_steps)


async def _bearer(args: argparse.Namespace, http: httpx2.AsyncClient) -> str | None:
    if args.use_user_token:
        _report(f"identity: the signed-in user ({args.token_file})")
        return await user_token(args.token_file, http)
    if args.issuer:
        if not args.client_id:
            raise AgentError(
                "--issuer needs --client-id (and the secret in the variable named by --client-secret-env)."
            )
        secret = os.environ.get(args.client_secret_env)
        if not secret:
            raise AgentError(f"Set {args.client_secret_env} to the client secret of {args.client_id!r}.")
        _report(f"identity: agent client {args.client_id!r} (client credentials at {args.issuer})")
        return await client_credentials_token(
            http, args.issuer, args.client_id, secret, scope=" ".join(args.scope or ()), resource=args.resource
        )
    _report("identity: none (a gateway started with --insecure-dev accepts that)")
    return None


def _model(args: argparse.Namespace) -> Model:
    if args.model == "scripted":
        return ScriptedModel(load_script(args.script))
    if args.model == "bedrock":
        from examples.agent.bedrock import DEFAULT_MODEL_ID, BedrockModel

        return BedrockModel(args.model_id or DEFAULT_MODEL_ID, region=args.region)
    try:
        from examples.agent.anthropic_api import DEFAULT_MODEL, AnthropicModel
    except ImportError:
        raise AgentError("The Anthropic backend needs the `anthropic` package: pip install '.[agent]'.") from None
    if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        raise AgentError("Set ANTHROPIC_API_KEY for --model anthropic.")
    return AnthropicModel(args.model_id or DEFAULT_MODEL)


def _report(line: str) -> None:
    print(f"agent: {line}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.agent",
        description="An agent that starts with the gateway's intelligent_tool_finder and discovers the tools it needs.",
    )
    parser.add_argument("task", help="what to do, in plain words")
    parser.add_argument("--gateway", default="http://127.0.0.1:8000/mcp", help="the gateway's MCP URL (%(default)s)")
    parser.add_argument("--model", choices=["bedrock", "anthropic", "scripted"], default="bedrock")
    parser.add_argument("--model-id", help="Bedrock model id or Anthropic model name (default: per backend)")
    parser.add_argument("--region", help="AWS region for Bedrock (default: boto3's configuration, else us-east-1)")
    parser.add_argument("--script", type=Path, default=DEFAULT_SCRIPT, help="script of --model scripted")
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, help="give up after this many turns")
    user = parser.add_argument_group("user identity (the token `mcp-aggregator login` stored)")
    user.add_argument("--use-user-token", action="store_true", help="call the gateway as the signed-in user")
    user.add_argument("--token-file", type=Path, default=LoginSettings().token_file, help="(%(default)s)")
    agent = parser.add_argument_group("agent identity (OAuth2 client credentials)")
    agent.add_argument("--issuer", help="the authorization server (OIDC discovery)")
    agent.add_argument("--client-id", help="the agent's client id")
    agent.add_argument(
        "--client-secret-env", default="AGENT_CLIENT_SECRET", help="variable holding its secret (%(default)s)"
    )
    agent.add_argument("--scope", action="append", help="a scope to request (repeatable)")
    agent.add_argument("--resource", help="RFC 8707 resource indicator (the gateway's URL or audience)")
    return parser


if __name__ == "__main__":
    sys.exit(main())

"""Safe reloads against a real nginx: a burst of registry changes is one valid config and one reload;
an unchanged render reloads nothing; a config nginx refuses leaves the running one serving.

No gateway runs here: a passthrough location that exists answers 500 (its authorisation check
cannot reach a gateway), one that does not answers 404. That is enough to tell which config is live.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from aggregator.config.settings import Settings
from aggregator.nginx import NginxControl, NginxPaths, NginxRenderer, apply
from aggregator.nginx.render import TEMPLATES
from aggregator.registry.models import ServersFile, load_servers
from tests.harness import free_port
from tests.nginx.harness import RunningNginx, nginx_command, nginx_settings, requires_nginx, running_nginx
from tests.processes import write_gateway_config

pytestmark = [pytest.mark.anyio, requires_nginx]


@dataclass
class Stage:
    directory: Path
    settings: Settings
    nginx: RunningNginx

    @property
    def servers_file(self) -> Path:
        return self.directory / "servers.yaml"

    def register(self, *names: str) -> None:
        register(self.servers_file, *names)

    def servers(self) -> ServersFile:
        return load_servers(self.servers_file)

    async def live(self, *names: str) -> dict[str, bool]:
        """Which of these servers have a passthrough location in the config nginx is running."""
        async with httpx2.AsyncClient(trust_env=False) as http:
            return {name: (await http.get(f"{self.nginx.url}/{name}/mcp")).status_code != 404 for name in names}


def register(servers_file: Path, *names: str) -> None:
    """Write servers.yaml with exactly these HTTP upstreams (nothing listens there; nginx does not mind)."""
    servers = {name: {"transport": "streamable-http", "url": "http://127.0.0.1:9/mcp"} for name in names}
    servers_file.write_text(json.dumps({"servers": servers}))


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    nginx: dict[str, Any] = nginx_settings(free_port(), gateway_replicas=["127.0.0.1:9"])
    settings = Settings.model_validate({"data_dir": tmp_path / "data", "nginx": nginx})
    write_gateway_config(tmp_path, nginx=nginx)
    register(tmp_path / "servers.yaml", "alpha")
    control = NginxControl(settings.nginx.binary, NginxPaths.from_settings(settings))
    servers = load_servers(tmp_path / "servers.yaml")
    await anyio.to_thread.run_sync(lambda: apply(settings, servers, control, reload=False))
    async with running_nginx(settings) as running:
        yield Stage(tmp_path, settings, running)


async def test_a_burst_of_changes_becomes_one_valid_config_and_one_reload(stage: Stage) -> None:
    assert await stage.live("alpha") == {"alpha": True}
    mark = len(stage.nginx.process.lines)
    async with NginxRenderer(stage.settings, stage.servers) as renderer:
        for names in [("alpha", "beta"), ("alpha", "beta", "gamma"), ("beta", "gamma"), ("beta", "gamma", "delta")]:
            stage.register(*names)
            renderer.schedule()
        stage.register("beta", "gamma")
        renderer.schedule()
        outcome = await renderer.wait_applied()
        assert outcome.error is None
        assert (outcome.changed, outcome.reloaded, outcome.passthrough) == (True, True, ("beta", "gamma"))
        await stage.nginx.wait_reloaded(mark)
        assert await stage.live("alpha", "beta", "gamma", "delta") == {
            "alpha": False,
            "beta": True,
            "gamma": True,
            "delta": False,
        }

        renderer.schedule()  # nothing changed since: rendered, compared, not reloaded
        again = await renderer.wait_applied()
        assert (again.changed, again.reloaded, again.error) == (False, False, None)
        assert renderer.reloads == 1
    reloads = [line for line in stage.nginx.process.lines[mark:] if "(SIGHUP) received" in line]
    assert len(reloads) == 1
    assert stage.nginx.problems() == []


async def test_a_config_nginx_refuses_keeps_the_running_one_and_says_why(stage: Stage) -> None:
    broken = stage.directory / "templates"
    shutil.copytree(TEMPLATES, broken)
    template = broken / "passthrough.conf.template"
    template.write_text(template.read_text().replace("proxy_intercept_errors on;", "proxy_intercept_errrors on;"))
    settings = stage.settings.model_copy(
        update={"nginx": stage.settings.nginx.model_copy(update={"templates_dir": broken})}
    )
    installed = NginxPaths.from_settings(settings).config_file.read_text()
    stage.register("alpha", "beta")
    async with NginxRenderer(settings, stage.servers) as renderer:
        renderer.schedule()
        outcome = await renderer.wait_applied()
    assert outcome.error is not None
    assert outcome.error.startswith("nginx -t rejected the rendered config; the running config is unchanged.")
    assert 'unknown directive "proxy_intercept_errrors"' in outcome.error
    assert "nginx.conf.rejected:" in outcome.error
    assert NginxPaths.from_settings(settings).config_file.read_text() == installed
    assert await stage.live("alpha", "beta") == {"alpha": True, "beta": False}
    assert stage.nginx.problems() == []


async def test_the_cli_reloads_only_when_the_config_changed(stage: Stage) -> None:
    stage.register("alpha", "beta")
    mark = len(stage.nginx.process.lines)
    changed = await nginx_command("reload", stage.directory / "gateway.yaml")
    assert changed.returncode == 0, changed.stderr
    assert "nginx.conf: updated; nginx reloaded\n  passthrough: /alpha/, /beta/\n" in changed.stdout
    await stage.nginx.wait_reloaded(mark)
    assert await stage.live("alpha", "beta") == {"alpha": True, "beta": True}
    unchanged = await nginx_command("reload", stage.directory / "gateway.yaml")
    assert "nginx.conf: unchanged\n" in unchanged.stdout

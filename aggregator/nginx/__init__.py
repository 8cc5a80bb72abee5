"""nginx in front of the gateway: per-server passthrough authorised by the gateway, and replicas."""

from aggregator.nginx.control import NginxControl
from aggregator.nginx.render import NginxPaths, RenderedConfig, render
from aggregator.nginx.renderer import Applied, NginxRenderer, apply

__all__ = ["Applied", "NginxControl", "NginxPaths", "NginxRenderer", "RenderedConfig", "apply", "render"]

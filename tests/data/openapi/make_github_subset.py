"""Cut GitHub's REST description to a few tags, with only the components those operations use.

The source is `generated/api.github.com.json` of the npm package @octokit/openapi 23.0.2 (MIT,
LICENSE.octokit beside this file). Regenerate with:

    npm pack @octokit/openapi@23.0.2 && tar xzf octokit-openapi-23.0.2.tgz
    python tests/data/openapi/make_github_subset.py package/generated/api.github.com.json \
        | gzip -9 -n > tests/data/openapi/github-rest-subset.json.gz

The result: OpenAPI 3.0.3, 348 operations on 223 paths (tags repos, issues, pulls, git, checks,
search, gists), 520 components; 1.5 MB of JSON, 186 kB gzipped.
"""

from __future__ import annotations

import json
import sys
from typing import Any

TAGS = frozenset({"repos", "issues", "pulls", "git", "checks", "search", "gists"})
METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})


def subset(source: dict[str, Any]) -> dict[str, Any]:
    """`source` with only the operations tagged with one of `TAGS`, and the components they reach."""
    paths: dict[str, Any] = {}
    for path, item in source["paths"].items():
        kept = {key: value for key, value in item.items() if key not in METHODS or set(value.get("tags", [])) & TAGS}
        if kept.keys() & METHODS:
            paths[path] = kept
    components = source.get("components", {})
    needed: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/components/"):
                _, _, kind, name = reference.split("/", 3)
                if (kind, name) not in needed:
                    needed.add((kind, name))
                    walk(components[kind][name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(paths)
    pruned: dict[str, dict[str, Any]] = {}
    for kind, name in sorted(needed):
        pruned.setdefault(kind, {})[name] = components[kind][name]
    dropped = ("paths", "components", "webhooks", "x-webhooks")
    kept_keys = {key: value for key, value in source.items() if key not in dropped}
    tags = [tag for tag in source.get("tags", []) if tag["name"] in TAGS]
    return {**kept_keys, "paths": paths, "components": pruned, "tags": tags}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        json.dump(subset(json.load(handle)), sys.stdout, separators=(",", ":"))

"""Sibling disambiguation (`search/siblings.py`): the action a tool name and a request say, and the re-sort
among one server's places. The real-model ranking of siblings is in test_ranking.py."""

from __future__ import annotations

from aggregator.search.siblings import action_of_name, action_of_text, actions_of_query, reorder


def test_sibling_reordering_moves_a_servers_tools_only_among_the_places_they_hold() -> None:
    # s3's get_bucket leads, another server's tool sits between s3's tools; the request lists.
    servers = [0, 1, 0, 0, 1]
    names = ["get_bucket", "list_files", "create_bucket", "list_buckets", "get_file"]
    scores = [0.80, 0.79, 0.78, 0.77, 0.70]
    order = reorder(servers, names, scores, frozenset({"list"}), bonus=0.05)
    assert [names[position] for position in order] == [
        "list_buckets",  # passes its siblings within 0.05 of it, taking the first s3 place
        "list_files",  # another server's tool keeps its place
        "get_bucket",
        "create_bucket",
        "get_file",  # within 0.05 of list_files, but it does not list: server 1 keeps its order
    ]
    assert reorder(servers, names, scores, frozenset({"list"}), bonus=0.0) == [0, 1, 2, 3, 4]
    assert reorder(servers, names, scores, frozenset(), bonus=0.05) == [0, 1, 2, 3, 4]


def test_a_small_bonus_does_not_pass_a_sibling_far_ahead() -> None:
    order = reorder([0, 0], ["get_bucket", "list_buckets"], [0.9, 0.7], frozenset({"list"}), bonus=0.05)
    assert order == [0, 1]


def test_tool_names_and_requests_say_their_action() -> None:
    assert [action_of_name(n) for n in ("get_task", "get_tasks", "pods_get", "s3_bucket_list", "GetCollections")] == [
        "get",
        "list",
        "get",
        "list",
        "list",
    ]
    assert [action_of_name(n) for n in ("delete-user", "Edit Newsletter", "uc_create_function", "whois")] == [
        "delete",
        "update",
        "create",
        None,
    ]
    assert action_of_text("list all my buckets") == "list"
    assert action_of_text("What S3 buckets do I have?") == "list"
    assert action_of_text("Show me the bucket named logs-2024") == "get"
    assert action_of_text("Get rid of the bucket logs-2024") == "delete"
    assert action_of_text("weather in Paris") is None
    assert actions_of_query(["Find the trending repositories", "write a summary to a.md"]) == {"search"}

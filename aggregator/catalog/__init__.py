"""The namespaced view: exported name <-> (upstream, original name) for tools, prompts, resources and
templates; host name budgets.
"""

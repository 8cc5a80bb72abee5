"""Trust in what upstreams say: tool definitions are pinned, and a change is held until an operator approves it.

    definition.py   what a tool's definition is, its fingerprint (sha256), a diff of two definitions
    scanner.py      flags suspicious text in a definition; its rules live in rules.json (data, one file)
    store.py        the pin store: data_dir/pins.json, written atomically under its lock (gateway and CLI)
    merge.py        how another replica's decisions combine with this one's, tool by tool (never undoing a verdict)
    sharing.py      PinRecords: the pins as records the replicas share (`aggregator.cluster.records` moves them)
    gate.py         the hold decision, applied by the catalog to every listing (`Gate.admit`)

The catalog asks the gate once per rebuild which of an upstream's tools it may serve, so lists,
calls, the finder index and the lean path all see the same filtered catalog: a held tool is unknown.
"""

"""The console's widgets; each takes its data as reactive attributes and posts messages up."""

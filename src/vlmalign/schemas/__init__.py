"""Typed, versioned schemas of the files vlmalign writes (docs/artifacts.md).

One module per artifact: `adapter_card`, `provenance`, `results`, `judge_validity`;
`registry` names them for `vlmalign schema NAME`. Importing this package imports none of them.
"""

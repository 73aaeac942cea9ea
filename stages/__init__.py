"""Pipeline stages: each one function with explicit inputs (extract, train, evaluate, analyze)."""

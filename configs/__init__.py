"""Training presets (YAML files holding only overrides); shipped inside the package as `dra_pipeline.configs`."""

"""The wiring layer: one module per stage turns paths and settings into objects, runs the stage and writes its
files. Commands (pipeline/commands) call these; stages (stages/) never import them."""

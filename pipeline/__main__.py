from dra_pipeline.cli import main

main()

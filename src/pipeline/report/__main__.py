from pipeline.report.app import cli

cli()

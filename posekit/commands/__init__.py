"""One module per `posekit` subcommand: `add_arguments(parser)` and `run(args) -> exit code`."""

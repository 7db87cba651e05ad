"""liftstack writeback: writes campaign assignments into Iterable profiles
(`lf_assignments.<campaign key>`) with one shared rate budget per Iterable project.
See services/writeback/README.md."""

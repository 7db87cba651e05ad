"""liftstack's web console and the campaign loop it drives."""

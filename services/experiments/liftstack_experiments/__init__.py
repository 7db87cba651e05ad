"""liftstack's experiments service: campaigns, variant assignment, the campaign loop, attribution and lift."""

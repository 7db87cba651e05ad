"""liftstack templates: generates the conditional Handlebars email template of a
campaign (generate.py) and publishes it to the customer's Iterable project
(publish.py), over an HTTP API (api.py, composed in app.py)."""

"""The operator command line's HTTP side: `notifq campaign …`, `notifq workers`, `notifq login`.

It talks to a running API only (never to PostgreSQL or Redis directly), so it works from any
machine that can reach the API, with nothing but a URL and a token.
"""

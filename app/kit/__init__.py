"""Pure helpers shared by every layer (no I/O, nothing above them imported).

`pagination` (Page, cursors), `etag` (If-None-Match), `time` (zones and date bounds),
`client_ip` (trusted proxies, the one client-address resolver), `text` (emails, file
names). Modelled on Polar's server/polar/kit.
"""

"""RFC 8639 dynamic subscriptions and RFC 8641 YANG-push on the agents' NETCONF (RFC 8640).

`model` (values), `table` (the subscriptions and their bounds), `changes` (two snapshots →
a YANG Patch) and `messages` (parsing the RPCs, building the notifications) are pure;
`publisher` drives them with timers and sessions; `rpcs` are the operation handlers.
"""

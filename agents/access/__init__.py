"""Who may do what on an agent: users and their credentials, and NACM (RFC 8341) decisions.

Pure: no protocol inside. `users` (accounts, password hashes, keys), `nacm` (the rules as
values, their RFC 7951 form, the decisions), `paths` (data node paths), `writes` (what an
edit creates, updates and deletes). NETCONF and RESTCONF front ends both call it.
"""

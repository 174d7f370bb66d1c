"""Access control: bearer tokens with scopes, and which scope each RPC needs.

No gRPC here (architecture rule): the server's interceptor asks `Access.check`
and turns its answer into a status code.
"""

from sipd.access.policy import OPEN_METHODS, required_scope
from sipd.access.tokens import Access, Decision, Scope, load_owner_token

__all__ = ["OPEN_METHODS", "Access", "Decision", "Scope", "load_owner_token", "required_scope"]

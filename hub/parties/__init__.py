"""The party registry: platforms, their parties (roles), their endpoints, and the credentials handshake.

OCPI 2.2.1 credentials chapter and hub notes §2; the hub is Sender or Receiver of the handshake as the case needs.
"""

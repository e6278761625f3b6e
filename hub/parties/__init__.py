"""The party registry: platforms, their parties (roles), their endpoints and the credentials handshake (OCPI 2.2.1 ch. 7)."""

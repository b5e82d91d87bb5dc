"""Client data API beyond immutable files: signed mutable records, accounts and messages.

- :mod:`node.data.records`: owner-signed, versioned records and the replicas' acceptance rule;
- :mod:`node.data.account`: self-authentication (keyword + PIN + password -> an encrypted
  account record that only its user can find, open and update);
- :mod:`node.data.inbox`: sealed, signed letters and the inbox state a node keeps.

All three are sans-IO: no sockets, clocks or event loop; times are passed in.
"""

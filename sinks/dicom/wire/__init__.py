"""The direct DICOM paths: DIMSE messages read and written on pynetdicom's association socket.

One module per side and concern, named for the role it plays on the association:

- ``scu``: the requestor's C-FIND and C-MOVE exchanges (PS3.4 C.4.1 / C.4.2; PS3.7 9.1.2 / 9.1.4);
- ``scp``: the acceptor's C-STORE receive loop and pre-encoded C-STORE responses (PS3.7 9.1.1);
- ``pdu``: what both encode and decode: P-DATA-TF PDUs and their PDV items (PS3.8 9.3.5, E.2),
  command sets in Implicit VR Little Endian (PS3.7 6.3.1, E);
- ``compat``: which pynetdicom internals ``scu`` and ``scp`` rely on, and the self-check that decides
  whether they may run on the installed pynetdicom (else plain pynetdicom serves).

pynetdicom negotiates and releases every association; these paths take the socket only while an
association is established (state Sta6, PS3.8 9.2) and hand it back for anything they do not handle.
"""

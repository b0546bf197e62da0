# A grpcio (C-core) client, as the shipped app is: it pins the server's PEM as
# its only root and overrides the target name, exactly like the app's
# "production" server entry (client.md §2).
import sys, grpc
addr, pem, name = sys.argv[1], sys.argv[2], sys.argv[3]
def s(field, v):
    b = v.encode()
    return bytes([field << 3 | 2, len(b)]) + b
req = s(1, "hello from grpcio") + s(2, "") + s(5, "PYTHON-CLIENT-DEVICE-01") + s(6, "7d1c7a52-52a4-4c59-9b1e-3f4d5e6a7b8c") + bytes([7 << 3, 2]) + s(9, "")
creds = grpc.ssl_channel_credentials(root_certificates=open(pem, "rb").read())
ch = grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", name)])
call = ch.unary_stream("/streaming.StreamingService/StreamAudio", request_serializer=lambda x: x, response_deserializer=lambda x: x)
kinds = {}
for msg in call(req, timeout=20):
    k = msg[0] >> 3
    kinds[k] = kinds.get(k, 0) + 1
print("messages by field:", kinds)
assert kinds.get(3) == 1 and kinds.get(2, 0) > 0, kinds
print("OK: text, audio and end_message over pinned TLS")

"""Writes the Wyoming fixtures in this folder (see README.md).

Each event is framed exactly as wyoming's write_event (wyoming 1.7, the
version wyoming-piper 1.6 requires) frames it: the header is json.dumps of
{"type", "version", "data_length"?, "payload_length"?} in that key order, the
data is json.dumps(data, ensure_ascii=False), then the payload.
"""
import json
import sys
import wave

VERSION = "1.7.2"
SAMPLES_PER_CHUNK = 1024  # wyoming-piper's --samples-per-chunk default


def event(typ, data=None, payload=b""):
    header = {"type": typ, "version": VERSION}
    data_bytes = b""
    if data:
        data_bytes = json.dumps(data, ensure_ascii=False).encode("utf-8")
        header["data_length"] = len(data_bytes)
    if payload:
        header["payload_length"] = len(payload)
    line = json.dumps(header, ensure_ascii=False).encode("utf-8") + b"\n"
    return line + data_bytes + payload


def fmt(rate, width, channels):
    return {"rate": rate, "width": width, "channels": channels, "timestamp": None}


def hello(wav_path):
    # wyoming-piper's _handle_synthesize for a one-sentence text.
    with wave.open(wav_path, "rb") as w:
        rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
        audio = w.readframes(w.getnframes())
    out = event("audio-start", fmt(rate, width, channels))
    step = SAMPLES_PER_CHUNK * width * channels
    for i in range(0, len(audio), step):
        out += event("audio-chunk", fmt(rate, width, channels), audio[i : i + step])
    return out + event("audio-stop", {"timestamp": None})


def main():
    with open("piper_hello.events", "wb") as f:
        f.write(hello(sys.argv[1]))
    # handle_event's except branch: Error(text=str(err), code=class name);
    # download.find_voice raises VoiceNotFoundError(name).
    with open("piper_voice_not_found.events", "wb") as f:
        f.write(event("error", {"text": "xx_XX-nobody-medium", "code": "VoiceNotFoundError"}))
    # A text without a sentence: no audio-start, only audio-stop.
    with open("piper_no_sentence.events", "wb") as f:
        f.write(event("audio-stop", {"timestamp": None}))


main()

"""Wire formats and config, as pure functions."""

import base64
import json

import pytest

from voicebot.config import Settings, load_settings
from voicebot.errors import ConfigError, ProtocolError
from voicebot.signing import twilio_signature, valid_twilio_signature
from voicebot.telephony import twilio_codec as tc
from voicebot.telephony.native import parse_event, parse_start
from voicebot.telephony.twiml import connect_twiml, dial_twiml


def test_twilio_start_and_media_parse():
    start = tc.parse(json.dumps({
        "event": "start", "streamSid": "MZ1",
        "start": {"streamSid": "MZ1", "callSid": "CA1", "mediaFormat":
                  {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                  "customParameters": {"caller": "+1555"}},
    }))
    assert start == tc.Start("MZ1", "CA1", "audio/x-mulaw", 8000, {"caller": "+1555"})
    media = tc.parse(json.dumps({"event": "media", "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}}))
    assert media == tc.Media(b"\xff" * 160, "inbound")
    assert tc.parse('{"event":"mark","mark":{"name":"1-disclosure"}}') == tc.Mark("1-disclosure")
    assert tc.parse('{"event":"dtmf","dtmf":{"digit":"0"}}') == tc.Dtmf("0")
    assert tc.parse('{"event":"stop"}') == tc.Stop()


@pytest.mark.parametrize("raw, reason", [
    ("not json", "not valid JSON"),
    ("[1,2]", "JSON object"),
    ('{"event":"dance"}', "unknown event"),
    ('{"event":"media","media":{"payload":"!!!"}}', "base64"),
    ('{"event":"media"}', "missing object"),
    ('{"event":"start","start":{"callSid":"CA"}}', "streamSid"),
    ('{"event":"start","streamSid":"MZ","start":{"callSid":"CA",'
     '"mediaFormat":{"encoding":"audio/l16","sampleRate":16000}}}', "unsupported media format"),
    ('{"event":"dtmf","dtmf":{"digit":"x"}}', "digit"),
])
def test_twilio_malformed_messages_raise_with_reason(raw, reason):
    with pytest.raises(ProtocolError, match=reason):
        tc.parse(raw)


def test_twilio_outbound_messages_exact():
    assert json.loads(tc.clear_message("MZ1")) == {"event": "clear", "streamSid": "MZ1"}
    assert json.loads(tc.mark_message("MZ1", "m")) == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "m"}}
    media = json.loads(tc.media_message("MZ1", b"\x7f\x00"))
    assert media == {"event": "media", "streamSid": "MZ1", "media": {"payload": "fwA="}}


def test_twilio_signature_matches_documented_example():
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert valid_twilio_signature("12345", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", url, params)
    assert not valid_twilio_signature("12345", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", url + "&x=1", params)
    assert not valid_twilio_signature("12345", None, url, params)


def test_twiml_documents():
    s = Settings(public_url="https://bot.example.com", human_line="sip:queue@pbx.example.com")
    twiml = connect_twiml(s, '+1555"<x>')
    assert '<Connect action="https://bot.example.com/twilio/stream-ended">' in twiml
    assert '<Stream url="wss://bot.example.com/twilio/media">' in twiml
    from xml.etree import ElementTree

    param = ElementTree.fromstring(twiml).find("./Connect/Stream/Parameter")
    assert param is not None and param.attrib == {"name": "caller", "value": '+1555"<x>'}
    local = connect_twiml(Settings(), "+1", "http://127.0.0.1:8080")
    assert '<Stream url="ws://127.0.0.1:8080/twilio/media">' in local
    assert dial_twiml("sip:q@pbx").endswith("<Dial><Sip>sip:q@pbx</Sip></Dial></Response>")
    assert "<Dial>+15550100</Dial>" in dial_twiml("+15550100")
    assert '<Dial action="https://b.example/twilio/dial-ended">+1555' in dial_twiml(
        "+15550100", "https://b.example/twilio/dial-ended")


def test_native_start_validation():
    record, fmt = parse_start(parse_event(
        '{"event":"start","call_id":"c1","caller":"+1","sample_rate":16000,"encoding":"mulaw"}'))
    assert record.call_id == "c1" and fmt.sample_rate == 16000 and fmt.encoding == "mulaw"
    for bad in ('{"event":"start","sample_rate":44100}', '{"event":"start","encoding":"opus"}',
                '{"event":"dtmf"}', '{"event":"start","call_id":5}', '"start"'):
        with pytest.raises(ProtocolError):
            parse_start(parse_event(bad))


def test_config_env_overrides_toml_and_names_bad_keys(tmp_path):
    path = tmp_path / "voicebot.toml"
    path.write_text('port = 9000\nhuman_line = "+15551234"\nlanguage = "ko"\n')
    s = load_settings(path, env={"VOICEBOT_PORT": "9100"})
    assert (s.port, s.human_line, s.language) == (9100, "+15551234", "ko")
    cases = [({"VOICEBOT_PORT": "eighty"}, "port"), ({"VOICEBOT_LANGUAGE": "xx"}, "language"),
             ({"VOICEBOT_DISCLOSURE_TEXT": ""}, "disclosure_text"),
             ({"VOICEBOT_CONFIDENCE_THRESHOLD": "2"}, "confidence_threshold"),
             ({"VOICEBOT_PUBLIC_URL": "ftp://x"}, "public_url")]
    for env, key in cases:
        with pytest.raises(ConfigError) as info:
            load_settings(env=env)
        assert info.value.key == key and key in str(info.value)
    path.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="colour"):
        load_settings(path, env={})
    path.write_text("port = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, env={})

"""The prefix cache on disk (`dsv4 serve --cache-dir`): a conversation's prefix survives a
restart (SIGTERM) and comes back from disk with the same greedy output as a cold run and a far
shorter time to first token; damaged files are skipped and recomputed; a second server on the
same directory is refused; `dsv4 cache inspect|clear`."""
import glob, os, subprocess, time

import pytest
from openai import OpenAI

from conftest import BIN, Server

NO_THINK = {"thinking": {"type": "disabled"}, "ignore_eos": True}
# Words of the long system prompt (about 1.2 tokens each on dsv4-tiny). The 32,768
# tokens take ~40 s of prefill in release on 2 cores; CI runs a debug binary, so the default
# is smaller. DSV4_DISK_TEST_WORDS=27000 reproduces the size.
WORDS = int(os.environ.get("DSV4_DISK_TEST_WORDS", "3000"))
PAGE = 128  # dsv4-tiny's page (positions per history page)


def conversation(nonce):
    words = " ".join(f"w{(i * 7919 + nonce) % 997}" for i in range(WORDS))
    return [{"role": "system", "content": f"Session {nonce}. Notes: {words}"}, {"role": "user", "content": "Summarise the notes."}]


def ask(s, messages, max_tokens=8):
    """(text, usage, seconds to the first token) of a greedy streamed request."""
    c = OpenAI(base_url=s.base + "/v1", api_key="x", max_retries=0, timeout=1200)
    start, first, text, usage = time.time(), None, "", None
    for ch in c.chat.completions.create(model="dsv4-tiny", messages=messages, max_tokens=max_tokens, temperature=0, stream=True,
                                        stream_options={"include_usage": True}, extra_body=NO_THINK):
        if ch.choices and ch.choices[0].delta.content:
            first = first or time.time()
            text += ch.choices[0].delta.content
        if ch.usage:
            usage = ch.usage
    return text, usage, (first or time.time()) - start


@pytest.fixture(scope="module")
def plain():
    """A server without a disk tier for the cold references (its own: long prompts would
    change the shared session server's memory under the other files' tests)."""
    s = Server()
    yield s
    s.stop()


def stop(s):
    s.proc.terminate()
    assert s.proc.wait(timeout=120) == 0


def cli(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60)


def test_a_restarted_server_serves_the_prefix_from_disk(plain, tmp_path):
    cache = str(tmp_path / "cache")
    turn1 = conversation(nonce=int(time.time()) % 100000)
    first = Server("--cache-dir", cache)
    try:
        answer, u1, cold1 = ask(first, turn1)
        assert u1.prompt_tokens_details.cached_tokens == 0
    finally:
        stop(first)
    assert any("disk cache" in l for l in first.log_lines())
    assert len(glob.glob(cache + "/*.kv")) >= u1.prompt_tokens // PAGE
    report = cli("cache", "inspect", "--cache-dir", cache)
    assert report.returncode == 0 and "entries" in report.stdout, report

    turn2 = turn1 + [{"role": "assistant", "content": answer}, {"role": "user", "content": "And the last word?"}]
    cold_text, cold_usage, cold_ttft = ask(plain, turn2)  # no disk tier, never saw this prompt
    assert cold_usage.prompt_tokens_details.cached_tokens == 0
    again = Server("--cache-dir", cache)
    try:
        text, usage, ttft = ask(again, turn2)
        shared = u1.prompt_tokens // PAGE * PAGE
        print(f"first turn {u1.prompt_tokens} tokens, next turn {usage.prompt_tokens} tokens: cached {usage.prompt_tokens_details.cached_tokens} of a {shared}-token shared prefix; "
              f"time to first token cold {cold_ttft:.2f} s, from disk {ttft:.2f} s ({cold_ttft / ttft:.1f}x)")
        assert usage.prompt_tokens == cold_usage.prompt_tokens
        assert usage.prompt_tokens_details.cached_tokens >= 0.99 * shared
        assert text == cold_text  # greedy: token for token what a cold run says
        assert ttft * 4 < cold_ttft
        m = again.metrics()
        assert m["dsv4_disk_cache_hit_tokens_total"] >= 0.99 * shared and m["dsv4_disk_cache_entries"] > 0
        assert m["dsv4_disk_cache_read_bytes_total"] > 0
        # A second server on the same directory is refused, clearly, and exits non-zero.
        second = subprocess.run([BIN, "serve", "--port", "0", "--cache-dir", cache], capture_output=True, text=True, timeout=120)
        assert second.returncode != 0 and "in use by another dsv4 process" in second.stderr, second.stderr[-500:]
        assert cli("cache", "clear", "--cache-dir", cache).returncode != 0  # not while a server uses it
    finally:
        stop(again)
    cleared = cli("cache", "clear", "--cache-dir", cache)
    assert cleared.returncode == 0 and not glob.glob(cache + "/*.kv"), cleared


def test_damaged_files_are_skipped_and_recomputed(plain, tmp_path):
    cache = str(tmp_path / "cache")
    turn1 = [{"role": "system", "content": f"Damage {time.time()}: " + "lorem ipsum dolor sit amet " * 120},
             {"role": "user", "content": "Go on."}]
    first = Server("--cache-dir", cache)
    try:
        ask(first, turn1, max_tokens=2)
    finally:
        stop(first)
    files = sorted(glob.glob(cache + "/*.kv"))
    assert files
    # A truncated copy (removed when the server starts), then a flipped byte in every page
    # (found when the prompt reads its first page back).
    with open(files[0], "rb") as src, open(cache + "/0000000000000000-0000000000000000.kv", "wb") as dst:
        dst.write(src.read()[:-10])
    for f in files:
        with open(f, "r+b") as h:
            h.seek(128 + 4 * PAGE + 3)
            b = h.read(1)
            h.seek(128 + 4 * PAGE + 3)
            h.write(bytes([b[0] ^ 0xFF]))
    turn2 = turn1 + [{"role": "user", "content": "More."}]
    cold_text, _, _ = ask(plain, turn2)
    again = Server("--cache-dir", cache)
    try:
        text, usage, _ = ask(again, turn2)
        assert text == cold_text and usage.prompt_tokens_details.cached_tokens == 0
        assert again.metrics()["dsv4_disk_cache_corrupt_entries_total"] >= 1
    finally:
        stop(again)
    log = "\n".join(again.log_lines())
    assert "damaged, removed" in log and "checksum mismatch" in log, log[-2000:]


def test_an_unwritable_cache_dir_turns_the_tier_off_and_the_server_serves(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    s = Server("--cache-dir", str(blocker / "cache"))
    try:
        text, usage, _ = ask(s, [{"role": "user", "content": "Hello"}], max_tokens=3)
        assert usage.completion_tokens == 3
        assert s.metrics()["dsv4_disk_cache_enabled"] == 0
    finally:
        stop(s)
    assert any("disk cache off" in l for l in s.log_lines())

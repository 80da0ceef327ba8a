"""The older kind of sandbox reads its command's output as text, resuming at byte offsets."""

import codecs

from modal_proto import api_pb2

from shoal.api.sandboxes import log_batch

STDOUT = api_pb2.FILE_DESCRIPTOR_STDOUT


def test_a_character_cut_between_chunks_is_sent_whole_with_the_next():
    encoded = "aé€b".encode()  # 1 + 2 + 3 + 1 bytes
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    first = log_batch(decoder, encoded[:4], 4, STDOUT)  # "a", "é", and the first byte of "€"
    assert (first.items[0].data, first.entry_id) == ("aé", "3")
    second = log_batch(decoder, encoded[4:], len(encoded), STDOUT)
    assert (second.items[0].data, second.entry_id) == ("€b", str(len(encoded)))


def test_a_read_resumed_at_an_entry_id_misses_nothing():
    encoded = "€€".encode()
    cut = log_batch(codecs.getincrementaldecoder("utf-8")("replace"), encoded[:4], 4, STDOUT)
    resumed_at = int(cut.entry_id)
    rest = log_batch(codecs.getincrementaldecoder("utf-8")("replace"), encoded[resumed_at:], len(encoded), STDOUT)
    assert cut.items[0].data + rest.items[0].data == "€€"

"""The address shoal is reached at, as clients and workers elsewhere see it."""

from shoal.api.server import ShoalServer
from shoal.control.platform import Settings


def test_blob_urls_name_the_public_host_not_the_listening_address(tmp_path):
    settings = Settings(home=str(tmp_path), server_url="http://gpu-box.internal:7470")
    public = ShoalServer(settings, "0.0.0.0", 7470, 7471, 7472)
    assert public.blob_urls.upload("bl-1").startswith("http://gpu-box.internal:7471/blobs/bl-1?sig=")
    local = ShoalServer(Settings(home=str(tmp_path / "b")), "127.0.0.1", 7480, 7481, 7482)
    assert local.settings.server_url == "http://127.0.0.1:7480"
    assert local.blob_urls.download("bl-1").startswith("http://127.0.0.1:7481/blobs/bl-1?sig=")

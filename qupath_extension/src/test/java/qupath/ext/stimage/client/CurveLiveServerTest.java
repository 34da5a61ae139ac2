package qupath.ext.stimage.client;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * CURVE against the real Python server: keys made by {@code stimage serve --make-keys}, the server
 * started with {@code --host 0.0.0.0 --curve-keys DIR} (no {@code --insecure}), and clients with the
 * right keys, no keys, a client key the server does not know, and the wrong server key. Needs the
 * venv, like {@link LiveServerTest}; skipped without it or with {@code -Dstimage.live=false}.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class CurveLiveServerTest {
    /** What the extension uses (core.Backend.HEARTBEAT_TIMEOUT). */
    private static final Duration HEARTBEAT = Duration.ofSeconds(10);

    private Path repo;
    private Path stimage;
    private Path dir;
    private Path keys;
    private Path other;
    private String address;
    private LiveServer server;

    @BeforeAll
    void startServer() throws Exception {
        stimage = LiveServer.program();
        repo = Fixtures.repo();
        dir = Files.createTempDirectory("stimage-curve-");
        keys = dir.resolve("keys");
        other = dir.resolve("other");
        makeKeys(keys);
        makeKeys(other);
        // every interface, as for a GPU server: allowed with CURVE keys, without --insecure
        server = new LiveServer(dir.resolve("serve.log"), List.of("--host", "0.0.0.0", "--curve-keys",
                keys.toString()));
        address = server.address();
        server.start();
        try (StimageClient c = client(CurveKeys.fromFolder(keys))) {
            server.await(c::hello); // with the authorised keys, once the model is loaded
        }
    }

    @AfterAll
    void stopServer() throws Exception {
        if (server != null) {
            server.close();
        }
    }

    private void makeKeys(Path folder) throws Exception {
        Process p = new ProcessBuilder(stimage.toString(), "serve", "--make-keys", folder.toString())
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "stimage serve --make-keys hangs");
        assertEquals(0, p.exitValue(), out);
        assertTrue(Files.isRegularFile(folder.resolve("server.key")) && Files.isRegularFile(folder.resolve(
                "client.key_secret")), out);
    }

    private StimageClient client(CurveKeys k) {
        return new StimageClient(address, Duration.ofSeconds(120), HEARTBEAT, k);
    }

    /** A refused client gets handshake_failed well within its heartbeat timeout, and again on the next call. */
    private ServerException refused(CurveKeys k, String what) {
        try (StimageClient c = client(k)) {
            long t0 = System.nanoTime();
            ServerException e = assertThrows(ServerException.class, c::hello, what);
            double s = (System.nanoTime() - t0) / 1e9;
            System.out.printf("CURVE %s: %s after %.2f s: %s%n", what, e.getCode(), s, e.getMessage());
            assertEquals(ErrorCodes.HANDSHAKE_FAILED, e.getCode(), what + ": " + e.getMessage());
            assertTrue(s < HEARTBEAT.toSeconds(), what + ": took " + s + " s, not under the heartbeat timeout");
            ServerException again = assertThrows(ServerException.class, c::ping, what);
            assertEquals(ErrorCodes.HANDSHAKE_FAILED, again.getCode(), what + " (second call): " + again.getMessage());
            return e;
        }
    }

    @Test
    void anAuthorisedClientPredicts() throws Exception {
        try (StimageClient c = client(CurveKeys.fromFolder(keys))) {
            HelloResult hello = c.hello();
            assertEquals(Protocol.VERSION, hello.getProtocol());
            ModelInfo model = hello.getDefaultModel();
            List<byte[]> tiles = new ArrayList<>();
            List<double[]> boxes = new ArrayList<>();
            LiveServerTest.cutTiles(repo, model, tiles, boxes);
            PredictRequest.Builder b = PredictRequest.builder().mpp(LiveServerTest.IMAGE_MPP).imageId("curve/B4")
                    .genes(model.getGenes().subList(0, 2)).format(PredictRequest.FORMAT_TABLE);
            for (int i = 0; i < 2; i++) {
                double[] box = boxes.get(i);
                b.tile(tiles.get(i), box[0], box[1], box[2], box[3], "tile " + i);
            }
            PredictResult r = c.predict(b.build(), null, null);
            float[] mean = r.getColumn(model.getGenes().get(0) + ": mean");
            assertEquals(2, mean.length);
            assertTrue(Float.isFinite(mean[0]) && Float.isFinite(mean[1]));
        }
        // the server key as Z85 text (copied from server.key), the client key pair from its file
        String z85 = CurveKeys.fromFolder(keys).getServerPublicKeyZ85();
        try (StimageClient c = client(CurveKeys.load(z85, keys.resolve("client.key_secret")))) {
            assertTrue(c.ping().toNanos() > 0);
        }
    }

    @Test
    void aClientWithoutKeysIsToldTheServerWantsThem() {
        ServerException e = refused(null, "client without keys");
        assertTrue(e.getMessage().contains("--curve-keys"), e.getMessage());
    }

    @Test
    void aClientWhoseKeyIsNotAuthorisedIsToldWhichKeyToAdd() {
        CurveKeys k = CurveKeys.load(keys.resolve("server.key").toString(), other.resolve("client.key_secret"));
        ServerException e = refused(k, "unauthorised client key");
        assertTrue(e.getMessage().contains("authorized") && e.getMessage().contains(k.getClientPublicKeyZ85()),
                e.getMessage());
    }

    @Test
    void aClientWithTheWrongServerKeyIsRefused() {
        CurveKeys k = CurveKeys.load(other.resolve("server.key").toString(), keys.resolve("client.key_secret"));
        ServerException e = refused(k, "wrong server key");
        assertTrue(e.getMessage().contains("server.key"), e.getMessage());
    }

    @Test
    void theKeyFilesPythonWroteReadAsPythonReadsThem() throws Exception {
        CurveKeys k = CurveKeys.fromFolder(keys);
        String pub = Files.readString(keys.resolve("server.key"));
        assertTrue(pub.contains(k.getServerPublicKeyZ85()), pub);
        String client = Files.readString(keys.resolve("client.key_secret"));
        assertTrue(client.contains(k.getClientPublicKeyZ85()), "public key of " + client);
        // the server's secret file is refused as a server key: it must stay on the server
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CurveKeys.serverPublicKey(keys.resolve("server.key_secret").toString()));
        assertTrue(e.getMessage().contains("SECRET"), e.getMessage());
        // the client's public half is refused as its key pair
        e = assertThrows(IllegalArgumentException.class,
                () -> CurveKeys.load(keys.resolve("server.key").toString(), keys.resolve("client.key")));
        assertTrue(e.getMessage().contains("client.key_secret"), e.getMessage());
    }
}

package qupath.ext.stimage.core;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.ServerException;
import qupath.ext.stimage.client.StimageClient;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@link LocalBackend} with the real {@code stimage serve} of the repository's .venv (skipped
 * without it, or with {@code -Dstimage.live=false}): start from the environment's folder, ping,
 * refuse a second start on the same port, stop, and check that the process is gone; a bad model
 * folder reports the server's own error from the log.
 */
class LocalBackendLiveTest {
    @TempDir
    Path tmp;
    private Path venv;

    @BeforeEach
    void needsTheVenv() {
        assumeTrue(!"false".equals(System.getProperty("stimage.live")), "live tests off (-Dstimage.live=false)");
        venv = Path.of(System.getProperty("stimage.venv", TestFixtures.repo().resolve(".venv").toString()));
        assumeTrue(Files.isExecutable(venv.resolve("bin/stimage")),
                "no stimage in " + venv + " (run scripts/setup.sh)");
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    private LocalBackend.Config.Builder config(int port) {
        LocalBackend.Config.Builder b = LocalBackend.Config.builder(venv.toString()).port(port).device("cpu")
                .threads(2).logFile(tmp.resolve("serve.log"));
        String model = System.getProperty("stimage.model", "");
        return model.isBlank() ? b : b.model(model);
    }

    @Test
    void startsPingsAndStopsTheRealServerLeavingNoProcess() throws Exception {
        int port = freePort();
        LocalBackend b = new LocalBackend(config(port).build());
        List<String> progress = new CopyOnWriteArrayList<>();
        List<String> lines = new CopyOnWriteArrayList<>();
        b.addLogListener(lines::add);
        ProcessHandle handle;
        try {
            long t0 = System.nanoTime();
            HelloResult hello = b.start(LocalBackend.START_TIMEOUT, progress::add);
            System.out.printf("BENCHMARK local backend: answered %.1f s after start%n",
                    (System.nanoTime() - t0) / 1e9);
            assertTrue(b.isRunning());
            assertEquals(LocalBackend.State.RUNNING, b.getState());
            assertEquals("tcp://127.0.0.1:" + port, b.getAddress());
            assertFalse(hello.getModels().isEmpty(), "serves the bundled model");
            assertNull(b.getVersionWarning(), "the venv's stimage " + hello.getVersion()
                    + " is the extension's release");
            handle = b.getProcessHandle();
            assertNotNull(handle);
            assertTrue(handle.isAlive());
            try (StimageClient c = new StimageClient(b.getAddress(), Duration.ofSeconds(30), Duration.ofSeconds(5))) {
                assertTrue(c.ping().toMillis() < 5000);
            }
            assertTrue(String.join("\n", b.getLog().lines()).contains("stimage server on tcp://127.0.0.1:" + port),
                    b.getLog().lines().toString());
            assertTrue(lines.stream().anyMatch(l -> l.contains("stimage server on")), "listeners see the log");
            assertTrue(Files.readString(tmp.resolve("serve.log")).contains("stimage server on"), "the log file");
            assertTrue(progress.get(progress.size() - 1).startsWith("Running: "), progress.toString());
            assertSame(hello, b.start(Duration.ofSeconds(1), null), "a second start of a running backend is a no-op");

            LocalBackend second = new LocalBackend(config(port).logFile(tmp.resolve("second.log")).build());
            StimageException taken = assertThrows(StimageException.class,
                    () -> second.start(Duration.ofSeconds(60), null));
            assertEquals("A backend is already running", taken.getUserMessage().getTitle());
            assertTrue(taken.getUserMessage().getText().contains(hello.getVersion()), taken.getMessage());
        } finally {
            b.stop();
        }
        assertTrue(handle.onExit().get(5, TimeUnit.SECONDS) != null);
        assertFalse(handle.isAlive(), "the server process is gone");
        assertTrue(handle.descendants().noneMatch(ProcessHandle::isAlive));
        assertEquals(LocalBackend.State.STOPPED, b.getState());
        assertTrue(b.getPid().isEmpty());
        try (StimageClient c = new StimageClient(b.getAddress(), Duration.ofSeconds(5), Duration.ofSeconds(2))) {
            ServerException e = assertThrows(ServerException.class, c::ping);
            assertEquals(ErrorCodes.DISCONNECTED, e.getCode());
        }
        LocalBackend.checkPortFree(port);
    }

    @Test
    void aBadModelFolderReportsTheServersErrorNotAHang() throws Exception {
        Path nowhere = tmp.resolve("no-such-model");
        LocalBackend b = new LocalBackend(config(freePort()).model(nowhere.toString()).build());
        long t0 = System.nanoTime();
        StimageException e = assertThrows(StimageException.class, () -> b.start(LocalBackend.START_TIMEOUT, null));
        assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(60), "reported when it exits, not at the timeout");
        UserMessage m = e.getUserMessage();
        assertEquals("Local backend did not start", m.getTitle());
        assertTrue(m.getText().contains("exited with code 2"), m.getText());
        assertTrue(m.getText().contains("no-such-model"), "the server's own words about the folder: " + m.getText());
        assertTrue(m.getCommand().contains("--model " + nowhere), m.getCommand());
        assertEquals(LocalBackend.State.FAILED, b.getState());
    }
}

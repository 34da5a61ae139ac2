package qupath.ext.stimage.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.zeromq.ZMQ;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.Protocol;
import qupath.ext.stimage.client.ServerException;
import qupath.ext.stimage.client.StimageClient;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

/**
 * {@link LocalBackend} without Python: finding the program in the layouts of Linux, macOS and
 * Windows environments, clear messages for wrong paths, the command line, version comparison, a
 * taken port, and fake servers (shell scripts) that exit at once, never answer, or leave a child
 * behind. The real {@code stimage serve} is started by {@link LocalBackendLiveTest}.
 */
class LocalBackendTest {
    @TempDir
    Path tmp;

    private static Path program(Path file, String body) throws IOException {
        Files.createDirectories(file.getParent());
        Files.writeString(file, body, StandardCharsets.UTF_8);
        if (!LocalBackend.isWindows()) {
            Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rwxr-xr-x"));
        }
        return file;
    }

    private static UserMessage refused(String configured, boolean windows) {
        StimageException e = assertThrows(StimageException.class,
                () -> LocalBackend.resolveExecutable(configured, windows));
        return e.getUserMessage();
    }

    /** Whether a process is gone within a time (a killed child of a killed parent is reaped a moment later). */
    static boolean gone(long pid, Duration within) throws InterruptedException {
        long end = System.nanoTime() + within.toNanos();
        while (ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
            if (System.nanoTime() > end) {
                return false;
            }
            Thread.sleep(50);
        }
        return true;
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    // -- finding the program ---------------------------------------------------------------------

    @Test
    void findsStimageInLinuxAndMacosEnvironments() throws Exception {
        Path env = tmp.resolve("venv");
        Path exe = program(env.resolve("bin/stimage"), "#!/bin/sh\n");
        program(env.resolve("bin/python3.11"), "#!/bin/sh\n");
        assertEquals(exe, LocalBackend.resolveExecutable(env.toString(), false), "the venv (or conda env) folder");
        assertEquals(exe, LocalBackend.resolveExecutable(env.resolve("bin") + "/", false), "its bin folder");
        assertEquals(exe, LocalBackend.resolveExecutable(exe.toString(), false), "the program itself");
        assertEquals(exe, LocalBackend.resolveExecutable(env.resolve("bin/python3.11").toString(), false),
                "its python");
        assertEquals(exe, LocalBackend.resolveExecutable("  " + env + "  ", false), "pasted with spaces");
    }

    @Test
    void findsStimageInWindowsEnvironments() throws Exception {
        Path venv = tmp.resolve("venv");
        Path exe = program(venv.resolve("Scripts/stimage.exe"), "MZ");
        program(venv.resolve("Scripts/python.exe"), "MZ");
        assertEquals(exe, LocalBackend.resolveExecutable(venv.toString(), true), "venv folder");
        assertEquals(exe, LocalBackend.resolveExecutable(venv.resolve("Scripts").toString(), true), "Scripts");
        assertEquals(exe, LocalBackend.resolveExecutable(venv.resolve("Scripts/python.exe").toString(), true),
                "the venv's python.exe");
        // conda on Windows: python.exe in the environment's root, stimage.exe in Scripts
        Path conda = tmp.resolve("conda-env");
        Path cexe = program(conda.resolve("Scripts/stimage.exe"), "MZ");
        program(conda.resolve("python.exe"), "MZ");
        assertEquals(cexe, LocalBackend.resolveExecutable(conda.toString(), true));
        assertEquals(cexe, LocalBackend.resolveExecutable(conda.resolve("python.exe").toString(), true));
    }

    @Test
    void wrongPathsSayWhatWasWrongAndHowToFindTheRightOne() throws Exception {
        UserMessage blank = refused("  ", false);
        assertEquals("Python environment not set", blank.getTitle());
        assertEquals(LocalBackend.DOCTOR_COMMAND, blank.getCommand());
        assertTrue(blank.getText().contains("Backend settings > Local backend"), blank.getText());

        Path nowhere = tmp.resolve("no-such-env");
        UserMessage missing = refused(nowhere.toString(), false);
        assertEquals("Python environment not found", missing.getTitle());
        assertTrue(missing.getText().contains(nowhere + " does not exist"), missing.getText());
        assertEquals("stimage doctor --qupath", missing.getCommand());

        Path empty = Files.createDirectories(tmp.resolve("empty-env/bin"));
        UserMessage none = refused(empty.getParent().toString(), false);
        assertEquals("stimage not found in the Python environment", none.getTitle());
        assertTrue(none.getText().contains("No stimage program in " + empty.getParent()), none.getText());
        assertTrue(none.getText().contains(empty.resolve("stimage").toString()), "names where it looked: "
                + none.getText());
        assertTrue(none.getText().contains("pip install stimage"), none.getText());
        UserMessage noneWin = refused(empty.getParent().toString(), true);
        assertTrue(noneWin.getText().contains("stimage.exe"), noneWin.getText());

        assumeFalse(LocalBackend.isWindows(), "execute permission is a POSIX matter");
        Path notExec = tmp.resolve("env2/bin/stimage");
        Files.createDirectories(notExec.getParent());
        Files.writeString(notExec, "#!/bin/sh\n");
        UserMessage perm = refused(tmp.resolve("env2").toString(), false);
        assertEquals("stimage is not executable", perm.getTitle());
        assertTrue(perm.getText().contains("chmod +x " + notExec), perm.getText());
    }

    @Test
    void startWithAWrongPathFailsAtOnceWithoutAProcess() {
        LocalBackend b = new LocalBackend(LocalBackend.Config.builder(tmp.resolve("nope").toString())
                .logFile(tmp.resolve("log.txt")).build());
        StimageException e = assertThrows(StimageException.class, () -> b.start(Duration.ofSeconds(30), null));
        assertEquals("Python environment not found", e.getUserMessage().getTitle());
        assertEquals(LocalBackend.State.FAILED, b.getState());
        assertTrue(b.getPid().isEmpty());
        assertEquals("Python environment not found", UserMessages.of(e, b.getAddress()).getTitle(),
                "dialogs show the message the exception carries");
    }

    // -- command line, versions, addresses -------------------------------------------------------

    @Test
    void commandServesOnLoopbackWithPortModelDeviceAndThreads() {
        LocalBackend.Config c = LocalBackend.Config.builder("/env").port(6001).model(" /models/mine ")
                .device("cpu").threads(3).build();
        assertEquals(List.of("/env/bin/stimage", "serve", "--host", "127.0.0.1", "--port", "6001", "--model",
                "/models/mine", "--device", "cpu", "--exit-with-stdin"),
                LocalBackend.command(Path.of("/env/bin/stimage"), c));
        assertEquals("3", LocalBackend.environment(c).get("OMP_NUM_THREADS"));
        assertEquals("1", LocalBackend.environment(c).get("PYTHONUNBUFFERED"));
        LocalBackend.Config d = LocalBackend.Config.builder("/env").model("").device("auto").build();
        assertEquals(List.of("x", "serve", "--host", "127.0.0.1", "--port", "5557", "--exit-with-stdin"),
                LocalBackend.command(Path.of("x"), d), "defaults: the bundled model, device auto");
        assertFalse(LocalBackend.environment(d).containsKey("OMP_NUM_THREADS"), "0 threads: the libraries' default");
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class,
                () -> LocalBackend.Config.builder("/env").port(70000).build());
        assertTrue(bad.getMessage().contains("port"), bad.getMessage());
    }

    @Test
    void onlyLocalAddressesCanBeServedHere() {
        assertEquals(6000, LocalBackend.localPort("tcp://127.0.0.1:6000"));
        assertEquals(5557, LocalBackend.localPort("tcp://localhost:5557"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> LocalBackend.localPort("tcp://gpu-box:5557"));
        assertTrue(e.getMessage().contains("tcp://gpu-box:5557") && e.getMessage().contains("tcp://127.0.0.1:5557"),
                e.getMessage());
        assertFalse(LocalBackend.isLocalAddress("tcp://10.0.0.2:5557"));
    }

    @Test
    void versionsOfOneReleaseMatchAndOthersSayWhatToInstall() {
        assertNull(LocalBackend.versionWarning("0.1.0.dev0", "0.1.0"));
        assertNull(LocalBackend.versionWarning("0.1", "0.1.0"));
        assertNull(LocalBackend.versionWarning("0.1.0+local.3", "0.1.0"));
        String w = LocalBackend.versionWarning("0.2.1", "0.1.0");
        assertTrue(w.contains("stimage 0.2.1") && w.contains("extension is 0.1.0"), w);
        assertTrue(w.contains("pip install \"stimage==0.1.0\"") && w.contains("extension 0.2.1"), w);
        assertTrue(LocalBackend.versionWarning(null, "0.1.0").contains("not reported"));
    }

    @Test
    void messagesThatSayTheBackendIsDownOfferStart() {
        String a = "tcp://127.0.0.1:5557";
        assertTrue(LocalBackend.saysBackendDown(UserMessages.of(new ServerException(ErrorCodes.DISCONNECTED, "x"), a)));
        assertTrue(LocalBackend.saysBackendDown(UserMessages.of(new ServerException(ErrorCodes.UNAVAILABLE, "x"), a)));
        assertFalse(LocalBackend.saysBackendDown(UserMessages.of(new ServerException(ErrorCodes.UNKNOWN_MODEL, "x"),
                a)));
        assertFalse(LocalBackend.saysBackendDown(null));
    }

    @Test
    void logKeepsTheLastLinesAndCutsLongOnes() {
        BoundedLog log = new BoundedLog(3);
        for (int i = 0; i < 5; i++) {
            log.add("line " + i);
        }
        assertEquals(List.of("line 2", "line 3", "line 4"), log.lines());
        assertEquals(List.of("line 4"), log.tail(1));
        assertEquals(2, log.dropped());
        assertTrue(log.add("x".repeat(5000)).length() < 2100);
        assertThrows(IllegalArgumentException.class, () -> new BoundedLog(0));
    }

    // -- a taken port -----------------------------------------------------------------------------

    @Test
    void aTakenPortIsReportedBeforeAnythingStarts() throws Exception {
        Path exe = program(tmp.resolve("env/bin/stimage"), "#!/bin/sh\necho started > " + tmp.resolve("ran")
                + "\nexec sleep 30\n");
        try (ServerSocket s = new ServerSocket()) {
            s.bind(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), 0));
            int port = s.getLocalPort();
            StimageException e = assertThrows(StimageException.class, () -> LocalBackend.checkPortFree(port));
            assertEquals("Port " + port + " is in use", e.getUserMessage().getTitle());
            assertTrue(e.getUserMessage().getText().contains("Choose a free port"), e.getUserMessage().getText());
            LocalBackend b = new LocalBackend(LocalBackend.Config.builder(exe.getParent().getParent().toString())
                    .port(port).logFile(tmp.resolve("log.txt")).build());
            StimageException e2 = assertThrows(StimageException.class, () -> b.start(Duration.ofSeconds(30), null));
            assertEquals("Port " + port + " is in use", e2.getUserMessage().getTitle());
            assertFalse(Files.exists(tmp.resolve("ran")), "nothing was started");
        }
        LocalBackend.checkPortFree(freePort());
    }

    // -- fake servers -----------------------------------------------------------------------------

    @Test
    void aServerThatExitsAtOnceReportsItsLogTailNotAHang() throws Exception {
        assumeFalse(LocalBackend.isWindows(), "the fake server is a shell script");
        Path exe = program(tmp.resolve("env/bin/stimage"), "#!/bin/sh\necho \"loading the model\"\n"
                + "echo \"error: /models/nope: no such model folder; give one made by stimage train\" >&2\nexit 2\n");
        Path logFile = tmp.resolve("logs/serve.log");
        LocalBackend b = new LocalBackend(LocalBackend.Config.builder(exe.toString()).port(freePort())
                .logFile(logFile).build());
        long t0 = System.nanoTime();
        StimageException e = assertThrows(StimageException.class, () -> b.start(Duration.ofSeconds(60), null));
        assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(20), "reported at once, not after the timeout");
        UserMessage m = e.getUserMessage();
        assertEquals("Local backend did not start", m.getTitle());
        assertTrue(m.getText().contains("exited with code 2"), m.getText());
        assertTrue(m.getText().contains("error: /models/nope: no such model folder"), "the log's tail: " + m.getText());
        assertTrue(m.getText().contains(logFile.toString()), "names the log file: " + m.getText());
        assertTrue(m.getCommand().startsWith(exe + " serve --host 127.0.0.1 --port "), m.getCommand());
        assertEquals(LocalBackend.State.FAILED, b.getState());
        String written = Files.readString(logFile);
        assertTrue(written.contains("loading the model") && written.contains("no such model folder"), written);
    }

    @Test
    void aServerThatNeverAnswersIsStoppedAtTheTimeoutWithItsChildren() throws Exception {
        assumeFalse(LocalBackend.isWindows(), "the fake server is a shell script");
        Path exe = program(tmp.resolve("env/bin/stimage"), "#!/bin/sh\ntrap '' TERM\nsleep 120 &\n"
                + "echo \"parent $$ child $!\"\nwhile true; do sleep 1; done\n");
        LocalBackend b = new LocalBackend(LocalBackend.Config.builder(tmp.resolve("env").toString()).port(freePort())
                .logFile(tmp.resolve("log.txt")).build());
        long t0 = System.nanoTime();
        StimageException e = assertThrows(StimageException.class, () -> b.start(Duration.ofSeconds(4), null));
        long took = System.nanoTime() - t0;
        assertTrue(took < TimeUnit.SECONDS.toNanos(4 + 3 + 10 + 8), "timeout + ping + grace + kill, took "
                + took / 1e9 + " s");
        UserMessage m = e.getUserMessage();
        assertEquals("Local backend did not answer", m.getTitle());
        assertTrue(m.getText().contains("did not answer within 4 s") && m.getText().contains("parent "), m.getText());
        Matcher pids = Pattern.compile("parent (\\d+) child (\\d+)").matcher(String.join("\n", b.getLog().lines()));
        assertTrue(pids.find(), b.getLog().lines().toString());
        for (int g = 1; g <= 2; g++) {
            long pid = Long.parseLong(pids.group(g));
            assertTrue(gone(pid, Duration.ofSeconds(5)),
                    "process " + pid + " (one that ignores SIGTERM, and its child) is gone");
        }
        assertTrue(b.getPid().isEmpty());
    }

    @Test
    void stopFromAnotherThreadCancelsAStart() throws Exception {
        assumeFalse(LocalBackend.isWindows(), "the fake server is a shell script");
        Path exe = program(tmp.resolve("env/bin/stimage"), "#!/bin/sh\necho \"pid $$\"\nexec sleep 120\n");
        LocalBackend b = new LocalBackend(LocalBackend.Config.builder(exe.toString()).port(freePort())
                .logFile(tmp.resolve("log.txt")).build());
        List<LocalBackend.State> states = new CopyOnWriteArrayList<>();
        b.addStateListener(states::add);
        List<String> progress = new CopyOnWriteArrayList<>();
        CompletableFuture<Object> start = CompletableFuture.supplyAsync(() -> {
            try {
                return b.start(Duration.ofSeconds(120), progress::add);
            } catch (StimageException e) {
                return e;
            }
        });
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (b.getLog().lines().isEmpty() && System.nanoTime() < end) {
            Thread.sleep(50);
        }
        long pid = b.getPid().orElseThrow();
        assertEquals(LocalBackend.State.STARTING, b.getState());
        StimageException busy = assertThrows(StimageException.class, () -> b.start(Duration.ofSeconds(1), null));
        assertEquals("Local backend busy", busy.getUserMessage().getTitle());
        assertTrue(b.stop(Duration.ofSeconds(5)), "sleep exits on SIGTERM");
        Object r;
        try {
            r = start.get(15, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            fail(e.getCause());
            return;
        }
        assertInstanceOf(StimageException.class, r);
        assertEquals("Start cancelled", ((StimageException) r).getUserMessage().getTitle());
        assertTrue(gone(pid, Duration.ofSeconds(5)));
        assertEquals(LocalBackend.State.STOPPED, b.getState());
        assertEquals(LocalBackend.State.STARTING, states.get(0));
        assertTrue(progress.get(0).startsWith("Starting: " + exe + " serve"), progress.toString());
        assertTrue(b.stop(), "stopping a stopped backend is a no-op");
    }

    // -- versions, against a stand-in backend --------------------------------------------------

    /**
     * Starts a program that only sleeps, and once it runs answers ping and hello on its port
     * from this JVM (a ROUTER socket, as the backend), with the fixture's hello changed by the test.
     * Returns the running backend (the caller stops it), or the start's exception.
     */
    private Object startAgainstStandIn(JsonObject hello) throws Exception {
        Path exe = program(tmp.resolve("env/bin/stimage"), "#!/bin/sh\necho \"pid $$\"\nexec sleep 120\n");
        int port = freePort();
        LocalBackend b = new LocalBackend(LocalBackend.Config.builder(exe.toString()).port(port)
                .logFile(tmp.resolve("log.txt")).build());
        CompletableFuture<Object> start = CompletableFuture.supplyAsync(() -> {
            try {
                return b.start(Duration.ofSeconds(60), null);
            } catch (StimageException e) {
                return e;
            }
        });
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (b.getPid().isEmpty() && !start.isDone() && System.nanoTime() < end) {
            Thread.sleep(20);
        }
        long pid = b.getPid().orElseThrow();
        AtomicBoolean stop = new AtomicBoolean();
        ZMQ.Context ctx = ZMQ.context(1);
        Thread server = new Thread(() -> {
            try (ZMQ.Socket router = ctx.socket(ZMQ.ROUTER)) {
                router.setReceiveTimeOut(100);
                router.setLinger(0);
                router.bind("tcp://127.0.0.1:" + port);
                while (!stop.get()) {
                    byte[] identity = router.recv(0);
                    if (identity == null) {
                        continue;
                    }
                    JsonObject request = null;
                    while (router.hasReceiveMore()) {
                        byte[] f = router.recv(0);
                        if (request == null) {
                            request = Protocol.decodeHeader(f);
                        }
                    }
                    String op = request.get("op").getAsString();
                    JsonObject reply = new JsonObject();
                    reply.addProperty("protocol", 1);
                    reply.addProperty("id", request.get("id").getAsString());
                    reply.addProperty("kind", "result");
                    reply.addProperty("op", op);
                    JsonObject pong = new JsonObject();
                    pong.addProperty("pong", true);
                    reply.add("result", "hello".equals(op) ? hello : pong);
                    router.send(identity, ZMQ.SNDMORE);
                    router.send(Protocol.encodeHeader(reply), 0);
                }
            } catch (ServerException e) {
                throw new IllegalStateException(e);
            }
        }, "stand-in backend");
        server.start();
        try {
            Object r = start.get(60, TimeUnit.SECONDS);
            if (r instanceof HelloResult) {
                assertTrue(b.isRunning());
                assertEquals(pid, b.getPid().orElseThrow());
                return b;
            }
            assertTrue(gone(pid, Duration.ofSeconds(5)), "a backend it cannot use is stopped");
            return r;
        } finally {
            stop.set(true);
            server.join(5000);
            ctx.term();
        }
    }

    @Test
    void aBackendOfAnotherReleaseRunsAndSaysWhatToInstall() throws Exception {
        assumeFalse(LocalBackend.isWindows(), "the stand-in program is a shell script");
        JsonObject hello = TestFixtures.header("reply_hello_result").getAsJsonObject("result");
        hello.addProperty("version", "9.9.0");
        Object r = startAgainstStandIn(hello);
        assertInstanceOf(LocalBackend.class, r, String.valueOf(r));
        LocalBackend b = (LocalBackend) r;
        try {
            String w = b.getVersionWarning();
            assertTrue(w != null && w.contains("the backend is stimage 9.9.0, this extension is "
                    + StimageClient.CLIENT_VERSION), w);
            assertTrue(w.contains("pip install \"stimage==" + StimageClient.CLIENT_VERSION + "\""), w);
            assertEquals("9.9.0", b.getHello().getVersion());
        } finally {
            long pid = b.getPid().orElseThrow();
            assertTrue(b.stop());
            assertTrue(gone(pid, Duration.ofSeconds(5)));
        }
    }

    @Test
    void aBackendThatDiesWhileRunningIsReportedAndCanBeStartedAgain() throws Exception {
        assumeFalse(LocalBackend.isWindows(), "the stand-in program is a shell script");
        JsonObject hello = TestFixtures.header("reply_hello_result").getAsJsonObject("result");
        hello.addProperty("version", StimageClient.CLIENT_VERSION);
        Object r = startAgainstStandIn(hello);
        assertInstanceOf(LocalBackend.class, r, String.valueOf(r));
        LocalBackend b = (LocalBackend) r;
        assertTrue(ProcessHandle.of(b.getPid().orElseThrow()).orElseThrow().destroyForcibly());
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (b.getState() == LocalBackend.State.RUNNING && System.nanoTime() < end) {
            Thread.sleep(20);
        }
        assertEquals(LocalBackend.State.FAILED, b.getState());
        assertFalse(b.isRunning());
        assertTrue(b.getPid().isEmpty());
        List<String> tail = b.getLog().tail(1);
        assertTrue(tail.get(0).startsWith("(stimage serve exited by itself with code "), tail.toString());
    }

    @Test
    void aBackendOfAnotherProtocolIsStoppedWithWhatToInstall() throws Exception {
        assumeFalse(LocalBackend.isWindows(), "the stand-in program is a shell script");
        JsonObject hello = TestFixtures.header("reply_hello_result").getAsJsonObject("result");
        hello.addProperty("protocol", Protocol.VERSION + 1);
        JsonArray protocols = new JsonArray();
        protocols.add(Protocol.VERSION + 1);
        hello.add("protocols", protocols);
        Object r = startAgainstStandIn(hello);
        assertInstanceOf(StimageException.class, r, String.valueOf(r));
        UserMessage m = ((StimageException) r).getUserMessage();
        assertEquals("Protocol version mismatch", m.getTitle());
        assertTrue(m.getText().contains("speaks protocol " + (Protocol.VERSION + 1)), m.getText());
        assertEquals("pip install \"stimage==" + StimageClient.CLIENT_VERSION + "\"", m.getCommand());
    }
}

package qupath.ext.stimage.core;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.ServerException;
import qupath.ext.stimage.client.StimageClient;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalLong;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.stream.Collectors;

/**
 * A {@code stimage serve} started by the extension on this computer: resolves the {@code stimage}
 * program from a Python environment's folder (or takes the program itself), starts it on
 * 127.0.0.1 with the configured port, model and threads, keeps its output (the last
 * {@link #LOG_LINES} lines in memory and all of it in a log file), waits until it answers a ping,
 * and stops it gracefully (SIGTERM, which {@code stimage serve} handles) then forcibly, its child
 * processes too. A JVM shutdown hook stops it when QuPath exits. Pure Java: no QuPath, no JavaFX.
 *
 * <p>Every failure is a {@link StimageException} whose message says what was wrong and how to fix
 * it: no environment set, no {@code stimage} in it, the port in use, a server that exits at once
 * (with the last lines of its log), one that does not answer within the timeout, a protocol
 * mismatch. Nothing waits without a bound; {@link #stop()} from another thread cancels a start.
 *
 * <pre>{@code
 * LocalBackend b = new LocalBackend(LocalBackend.Config.builder("/home/me/stimage-env").port(5557).build());
 * HelloResult hello = b.start(LocalBackend.START_TIMEOUT, line -> System.out.println(line));
 * String warning = b.getVersionWarning();   // null when the backend's release matches the extension's
 * b.stop();
 * }</pre>
 */
public final class LocalBackend implements AutoCloseable {
    /** The interface a local backend listens on. */
    public static final String HOST = "127.0.0.1";
    /** How long a start waits for the first answer by default (models load in ~10 s on a laptop). */
    public static final Duration START_TIMEOUT = Duration.ofMinutes(3);
    /** How long a stop waits after SIGTERM before killing the process. */
    public static final Duration STOP_GRACE = Duration.ofSeconds(10);
    /** Lines of output kept in memory. */
    public static final int LOG_LINES = 2000;
    /** Lines of the log quoted in a message about a failed start. */
    public static final int TAIL_LINES = 15;
    /** Titles of the messages that say the configured backend does not answer (where Start helps). */
    public static final List<String> BACKEND_DOWN_TITLES = List.of("STImage backend not running",
            "STImage backend stopped");
    /** What to run in the Python environment to see what to paste into the settings. */
    public static final String DOCTOR_COMMAND = "stimage doctor --qupath";

    static final Duration PING_HEARTBEAT = Duration.ofSeconds(2);
    private static final Logger logger = LoggerFactory.getLogger(LocalBackend.class);
    private static final String SETTINGS = "Extensions > STImage > Backend settings > Local backend > "
            + "Options and log...";

    /** Where the backend is in its life. */
    public enum State {
        /** Not started, or stopped. */
        STOPPED,
        /** Started, not answering yet. */
        STARTING,
        /** Answering. */
        RUNNING,
        /** Being stopped. */
        STOPPING,
        /** The last start failed (see its exception and the log). */
        FAILED
    }

    private final Config config;
    private final BoundedLog log = new BoundedLog(LOG_LINES);
    private final List<Consumer<String>> logListeners = new CopyOnWriteArrayList<>();
    private final List<Consumer<State>> stateListeners = new CopyOnWriteArrayList<>();
    private final Object lock = new Object();
    private volatile State state = State.STOPPED;
    private volatile Process process;
    private volatile Thread pump;
    private volatile Thread hook;
    private volatile HelloResult hello;
    private volatile String versionWarning;
    private volatile boolean stopRequested;

    /**
     * @param config where the environment is and how to serve
     */
    public LocalBackend(Config config) {
        this.config = Objects.requireNonNull(config, "config must not be null");
    }

    // -- the pieces, static so that they can be tested alone ----------------------------------

    /**
     * The {@code stimage} program of a Python environment, on this computer's operating system.
     *
     * @param configured the environment's folder (a venv or conda env), its {@code bin} or
     *     {@code Scripts} folder, its {@code python}, or the {@code stimage} program itself
     * @return the program
     * @throws StimageException naming what was looked for and how to find the right path
     */
    public static Path resolveExecutable(String configured) throws StimageException {
        return resolveExecutable(configured, isWindows());
    }

    /**
     * @param configured as {@link #resolveExecutable(String)}
     * @param windows whether to look for the Windows layout ({@code Scripts\stimage.exe})
     * @return the program
     * @throws StimageException naming what was looked for and how to find the right path
     */
    static Path resolveExecutable(String configured, boolean windows) throws StimageException {
        if (configured == null || configured.isBlank()) {
            throw pathError("Python environment not set", "Set 'Python environment' in " + SETTINGS
                    + ": the folder of the environment where stimage is installed (e.g. the .venv made by "
                    + "scripts/setup.sh). In a terminal of that environment, the command below prints it.");
        }
        Path p;
        try {
            String s = configured.strip();
            if (s.startsWith("~")) {
                s = System.getProperty("user.home") + s.substring(1);
            }
            p = Path.of(s).toAbsolutePath().normalize();
        } catch (java.nio.file.InvalidPathException e) {
            throw pathError("Python environment not found", "'" + configured + "' is not a valid path ("
                    + e.getMessage() + "). Paste the 'Python environment' line that the command below prints, "
                    + "run in the environment where stimage is installed.");
        }
        if (!Files.exists(p)) {
            throw pathError("Python environment not found", p + " does not exist. Set 'Python environment' in "
                    + SETTINGS + " to the folder that the command below prints, run in a terminal "
                    + "of the environment where stimage is installed.");
        }
        List<Path> candidates = new ArrayList<>();
        if (Files.isDirectory(p)) {
            for (String rel : windows ? List.of("Scripts/stimage.exe", "Scripts/stimage", "stimage.exe", "bin/stimage")
                    : List.of("bin/stimage", "stimage")) {
                candidates.add(p.resolve(rel));
            }
        } else {
            String name = p.getFileName().toString().toLowerCase(java.util.Locale.ROOT);
            if (!name.matches("pythonw?(\\d+(\\.\\d+)?)?(\\.exe)?")) {
                return checkRunnable(p, windows);
            }
            Path dir = p.getParent();
            for (String rel : windows ? List.of("stimage.exe", "Scripts/stimage.exe", "stimage")
                    : List.of("stimage")) {
                candidates.add(dir.resolve(rel));
            }
        }
        for (Path c : candidates) {
            if (Files.isRegularFile(c)) {
                return checkRunnable(c, windows);
            }
        }
        throw pathError("stimage not found in the Python environment", "No stimage program in " + p
                + " (looked for " + candidates.stream().map(Path::toString).collect(Collectors.joining(", "))
                + "). Install it there (pip install "
                + "stimage, or bash scripts/setup.sh in the repository), or set 'Python environment' in "
                + SETTINGS + " to the folder that the command below prints in the right environment.");
    }

    private static Path checkRunnable(Path exe, boolean windows) throws StimageException {
        if (!Files.isRegularFile(exe)) {
            throw pathError("stimage not found in the Python environment", exe + " is not a program. Set 'Python "
                    + "environment' in " + SETTINGS + " to the folder the command below prints.");
        }
        if (!windows && !Files.isExecutable(exe)) {
            throw pathError("stimage is not executable", exe + " exists but may not be run (no execute "
                    + "permission). Run chmod +x " + exe + ", or reinstall stimage in that environment.");
        }
        return exe;
    }

    private static StimageException pathError(String title, String text) {
        return new StimageException(new UserMessage(UserMessage.Severity.ERROR, title, text, DOCTOR_COMMAND));
    }

    /**
     * @param exe the {@code stimage} program
     * @param config port, model, device
     * @return the command line that serves on 127.0.0.1 and stops when this JVM's pipe to its
     *     standard input closes
     */
    public static List<String> command(Path exe, Config config) {
        List<String> cmd = new ArrayList<>(List.of(exe.toString(), "serve", "--host", HOST, "--port",
                String.valueOf(config.getPort())));
        if (config.getModel() != null) {
            cmd.addAll(List.of("--model", config.getModel()));
        }
        if (config.getDevice() != null) {
            cmd.addAll(List.of("--device", config.getDevice()));
        }
        // The backend reads its standard input, a pipe held by this JVM, and stops when it
        // closes: also when QuPath is killed outright and no shutdown hook runs.
        cmd.add("--exit-with-stdin");
        return cmd;
    }

    /**
     * The environment variables set for the backend: unbuffered UTF-8 output (so the log is
     * live) and, with a thread count, the CPU threads of PyTorch and the maths libraries.
     *
     * @param config the threads
     * @return variables to add to this process's environment
     */
    public static Map<String, String> environment(Config config) {
        Map<String, String> env = new java.util.LinkedHashMap<>();
        env.put("PYTHONUNBUFFERED", "1");
        env.put("PYTHONIOENCODING", "utf-8");
        if (config.getThreads() > 0) {
            String n = String.valueOf(config.getThreads());
            for (String k : List.of("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")) {
                env.put(k, n);
            }
        }
        return env;
    }

    /**
     * Whether an address is on this computer (where a local backend can serve it).
     *
     * @param address {@code tcp://host:port}
     * @return true for 127.0.0.1, localhost and ::1
     */
    public static boolean isLocalAddress(String address) {
        try {
            String h = java.net.URI.create(address.trim()).getHost();
            return h != null && List.of("127.0.0.1", "localhost", "[::1]", "::1").contains(h.toLowerCase(
                    java.util.Locale.ROOT));
        } catch (IllegalArgumentException | NullPointerException e) {
            return false;
        }
    }

    /**
     * @param address {@code tcp://127.0.0.1:port} (or localhost)
     * @return the port
     * @throws IllegalArgumentException when the address is not one a local backend can serve
     */
    public static int localPort(String address) {
        String a = BackendOptions.checkAddress("Backend settings", address);
        if (!isLocalAddress(a)) {
            throw new IllegalArgumentException("A local backend listens on " + HOST + ", but the server address is "
                    + a + ". Set the server address to tcp://" + HOST + ":" + java.net.URI.create(a).getPort()
                    + " to start a backend on this computer, or start the backend on that machine yourself.");
        }
        return java.net.URI.create(a).getPort();
    }

    /**
     * @param message a message shown to the user
     * @return whether it says that the configured backend does not answer (so a Start helps)
     */
    public static boolean saysBackendDown(UserMessage message) {
        return message != null && BACKEND_DOWN_TITLES.contains(message.getTitle());
    }

    /**
     * Compares the backend's release with the extension's.
     *
     * @param serverVersion the version the backend's hello reports (e.g. {@code 0.1.0.dev0})
     * @param extensionVersion the extension's version
     * @return null when both are the same release (pre-release and local suffixes ignored), else
     *     what differs and what to install
     */
    public static String versionWarning(String serverVersion, String extensionVersion) {
        String s = release(serverVersion);
        String x = release(extensionVersion);
        if (s != null && s.equals(x)) {
            return null;
        }
        return "Version mismatch: the backend is stimage " + (serverVersion == null || serverVersion.isBlank()
                ? "(version not reported)" : serverVersion) + ", this extension is " + extensionVersion
                + ". They speak the same protocol, so runs work, but options and results may differ from what "
                + "either one's documentation says. Install matching releases: in the Python environment run "
                + "pip install \"stimage==" + x + "\", or install the extension "
                + (s == null ? "of the backend's release" : s) + ".";
    }

    /** @return {@code major.minor.patch} of a version ({@code 0.1} gives {@code 0.1.0}), or null */
    static String release(String version) {
        if (version == null) {
            return null;
        }
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("^v?(\\d+)(?:\\.(\\d+))?(?:\\.(\\d+))?")
                .matcher(version.strip());
        if (!m.find()) {
            return null;
        }
        return Integer.parseInt(m.group(1)) + "." + (m.group(2) == null ? 0 : Integer.parseInt(m.group(2))) + "."
                + (m.group(3) == null ? 0 : Integer.parseInt(m.group(3)));
    }

    /**
     * Fails when something listens on the port already (then {@code stimage serve} could not bind
     * it), saying whether it is a stimage backend that can simply be used.
     *
     * @param port the port on 127.0.0.1
     * @throws StimageException when the port is taken
     */
    public static void checkPortFree(int port) throws StimageException {
        try (java.net.ServerSocket s = new java.net.ServerSocket()) {
            s.bind(new java.net.InetSocketAddress(java.net.InetAddress.getByName(HOST), port));
            return;
        } catch (IOException e) {
            logger.debug("port {} taken: {}", port, e.toString());
        }
        String address = "tcp://" + HOST + ":" + port;
        String running = null;
        try (StimageClient c = new StimageClient(address, Duration.ofSeconds(5), PING_HEARTBEAT)) {
            HelloResult h = c.hello();
            running = h.getServer() + " " + h.getVersion();
        } catch (ServerException e) {
            logger.debug("no stimage backend on {}: {}", address, e.toString());
        }
        if (running != null) {
            throw new StimageException(new UserMessage(UserMessage.Severity.WARNING, "A backend is already running",
                    "A backend (" + running + ") already answers at " + address + ", started outside this QuPath "
                            + "or by an earlier one. Use it as it is (Test connection), or stop it (Ctrl+C in its "
                            + "terminal) before starting one here, or choose another port in the server address.",
                    null));
        }
        throw new StimageException(new UserMessage(UserMessage.Severity.ERROR, "Port " + port + " is in use",
                "Another program listens on port " + port + " of " + HOST + ", so a backend cannot start there. "
                        + "Choose a free port in the server address of " + UserMessages.SETTINGS + " (e.g. tcp://"
                        + HOST + ":" + (port == 65535 ? port - 1 : port + 1) + "), or stop the program that holds it.",
                null));
    }

    // -- life ---------------------------------------------------------------------------------

    /**
     * Starts the backend and waits until it answers (progress goes to {@code progress}, its output
     * to the log). Returns at once with the hello when it is running already.
     *
     * @param timeout how long to wait for the first answer
     * @param progress one line per step (from this thread), or null
     * @return the backend's hello
     * @throws StimageException what went wrong and what to do; the process is stopped then
     */
    public HelloResult start(Duration timeout, Consumer<String> progress) throws StimageException {
        Objects.requireNonNull(timeout, "timeout must not be null");
        Consumer<String> say = progress == null ? s -> { } : progress;
        synchronized (lock) {
            if (state == State.RUNNING && process != null && process.isAlive() && hello != null) {
                return hello;
            }
            if (state == State.STARTING || state == State.STOPPING) {
                throw new StimageException(new UserMessage(UserMessage.Severity.INFO, "Local backend busy",
                        "The local backend is " + (state == State.STARTING ? "starting" : "stopping")
                                + " already; wait for it (its log shows what it does).", null));
            }
            stopRequested = false;
            hello = null;
            versionWarning = null;
            setState(State.STARTING);
        }
        List<String> cmd = null;
        try {
            Path exe = resolveExecutable(config.getEnvironment());
            checkPortFree(config.getPort());
            cmd = command(exe, config);
            log.clear();
            Writer file = openLogFile(cmd);
            say.accept("Starting: " + String.join(" ", cmd));
            logger.info("starting the local backend: {}", cmd);
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
            pb.environment().putAll(environment(config));
            Process p;
            try {
                p = pb.start();
            } catch (IOException e) {
                closeQuietly(file);
                throw new StimageException(new UserMessage(UserMessage.Severity.ERROR, "Local backend did not start",
                        "Could not run " + exe + " (" + e.getMessage() + "). Check that it is the stimage program "
                                + "of a working Python environment: the command below, run in that environment, "
                                + "prints the path to use.", DOCTOR_COMMAND));
            }
            synchronized (lock) {
                process = p;
                pump = startPump(p, file);
                installHook(p);
            }
            p.onExit().thenRun(() -> exitedOnItsOwn(p));
            HelloResult h = waitUntilReady(p, timeout, say, cmd);
            synchronized (lock) {
                if (stopRequested || !p.isAlive()) {
                    throw cancelled();
                }
                hello = h;
                versionWarning = versionWarning(h.getVersion(), StimageClient.CLIENT_VERSION);
                setState(State.RUNNING);
            }
            say.accept("Running: " + h.getServer() + " " + h.getVersion() + " at " + getAddress() + " (pid "
                    + p.pid() + ", device " + h.getDevice() + ")");
            if (versionWarning != null) {
                logger.warn("{}", versionWarning);
                say.accept(versionWarning);
            }
            return h;
        } catch (StimageException e) {
            boolean cancelled = stopRequested;
            shutDown(STOP_GRACE);
            setState(cancelled ? State.STOPPED : State.FAILED);
            logger.warn("local backend did not start: {}", e.getMessage());
            throw e;
        } catch (RuntimeException | Error e) {
            shutDown(STOP_GRACE);
            setState(State.FAILED);
            throw e;
        }
    }

    private Writer openLogFile(List<String> cmd) {
        Path f = config.getLogFile();
        try {
            Files.createDirectories(f.toAbsolutePath().getParent());
            BufferedWriter w = Files.newBufferedWriter(f, StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                    StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE);
            w.write("# " + Instant.now() + " " + String.join(" ", cmd) + System.lineSeparator());
            w.flush();
            return w;
        } catch (IOException e) {
            addLine("(the log file " + f + " cannot be written: " + e.getMessage() + "; the log is kept in "
                    + "memory only)", null);
            return null;
        }
    }

    private Thread startPump(Process p, Writer file) {
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(),
                    StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    addLine(line, file);
                }
            } catch (IOException e) {
                addLine("(reading the backend's output stopped: " + e.getMessage() + ")", file);
            } finally {
                closeQuietly(file);
            }
        }, "stimage-local-backend-log");
        t.setDaemon(true);
        t.start();
        return t;
    }

    private void addLine(String line, Writer file) {
        String kept = log.add(line);
        if (file != null) {
            try {
                file.write(kept + System.lineSeparator());
                file.flush();
            } catch (IOException e) {
                logger.debug("log file: {}", e.toString());
            }
        }
        for (Consumer<String> l : logListeners) {
            try {
                l.accept(kept);
            } catch (RuntimeException e) {
                logger.warn("log listener failed: {}", e.toString());
            }
        }
    }

    private HelloResult waitUntilReady(Process p, Duration timeout, Consumer<String> say, List<String> cmd)
            throws StimageException {
        long t0 = System.nanoTime();
        long deadline = t0 + timeout.toNanos();
        try (StimageClient c = new StimageClient(getAddress(), StimageClient.SHORT_TIMEOUT, PING_HEARTBEAT)) {
            while (true) {
                if (stopRequested) {
                    throw cancelled();
                }
                if (!p.isAlive()) {
                    throw exited(p, cmd);
                }
                if (System.nanoTime() > deadline) {
                    throw timedOut(timeout, cmd);
                }
                try {
                    c.ping();
                    break;
                } catch (ServerException e) {
                    if (!ErrorCodes.DISCONNECTED.equals(e.getCode())) {
                        logger.debug("ping while starting: {}", e.toString());
                    }
                }
                List<String> last = log.tail(1);
                say.accept("Waiting for the backend to load its models (" + (System.nanoTime() - t0) / 1_000_000_000L
                        + " s)" + (last.isEmpty() ? "" : ": " + last.get(0)));
            }
            try {
                return c.hello();
            } catch (ServerException e) {
                UserMessage m = UserMessages.of(e, getAddress());
                if (ErrorCodes.UNSUPPORTED_PROTOCOL.equals(e.getCode())) {
                    throw new StimageException(new UserMessage(UserMessage.Severity.ERROR, m.getTitle(), m.getText()
                            + " The backend was started from " + cmd.get(0) + "; in that environment run the "
                            + "command below (or install the extension of the backend's release).",
                            "pip install \"stimage==" + StimageClient.CLIENT_VERSION + "\""));
                }
                throw new StimageException(m);
            }
        }
    }

    /** A running backend that exits without being asked (crashed, killed): FAILED, with a log line. */
    private void exitedOnItsOwn(Process p) {
        synchronized (lock) {
            if (process != p || stopRequested || state != State.RUNNING) {
                return;
            }
        }
        drainLog();
        synchronized (lock) {
            if (process != p || stopRequested || state != State.RUNNING) {
                return;
            }
            process = null;
            hello = null;
            removeHook();
        }
        String line = "(stimage serve exited by itself with code " + p.exitValue() + "; press Start to start it again)";
        logger.warn("local backend at {}: {}", getAddress(), line);
        addLine(line, null);
        setState(State.FAILED);
    }

    private StimageException exited(Process p, List<String> cmd) {
        int code = p.exitValue();
        drainLog();
        return new StimageException(new UserMessage(UserMessage.Severity.ERROR, "Local backend did not start",
                "stimage serve exited with code " + code + " before it answered. Its last lines:\n\n"
                        + tailText() + "\n\nFix what they say (e.g. a wrong model folder: leave it empty for the "
                        + "bundled model), then press Start again. The whole log is in " + config.getLogFile()
                        + "; the command below runs the same backend in a terminal.", String.join(" ", cmd)));
    }

    private StimageException timedOut(Duration timeout, List<String> cmd) {
        return new StimageException(new UserMessage(UserMessage.Severity.ERROR, "Local backend did not answer",
                "stimage serve did not answer within " + timeout.toSeconds() + " s, so it was stopped. Its last "
                        + "lines:\n\n" + tailText() + "\n\nA backend loading large models may need longer: "
                        + "run the command below in a terminal to watch it, and wait for 'stimage server on ...'. "
                        + "The whole log is in " + config.getLogFile() + ".", String.join(" ", cmd)));
    }

    private static StimageException cancelled() {
        return new StimageException(new UserMessage(UserMessage.Severity.INFO, "Start cancelled",
                "The local backend was stopped before it answered.", null));
    }

    private String tailText() {
        List<String> t = log.tail(TAIL_LINES);
        return t.isEmpty() ? "    (it printed nothing)" : "    " + String.join("\n    ", t);
    }

    /** Waits (briefly) for the pump to read what an exited process wrote. */
    private void drainLog() {
        Thread t = pump;
        if (t != null) {
            try {
                t.join(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /**
     * Stops the backend (SIGTERM, then after {@link #STOP_GRACE} a kill), and cancels a start in
     * progress. Returns at once when it is not running.
     *
     * @return true when it stopped by itself within the grace time (or was not running)
     */
    public boolean stop() {
        return stop(STOP_GRACE);
    }

    /**
     * @param grace how long to wait after SIGTERM before killing it
     * @return true when it stopped by itself within the grace time (or was not running)
     */
    public boolean stop(Duration grace) {
        synchronized (lock) {
            stopRequested = true;
            if (process == null) {
                return true;
            }
            if (state == State.RUNNING) {
                setState(State.STOPPING);
            }
        }
        boolean graceful = shutDown(grace);
        synchronized (lock) {
            if (state == State.STOPPING || state == State.RUNNING) {
                setState(State.STOPPED);
            }
        }
        return graceful;
    }

    private boolean shutDown(Duration grace) {
        Process p;
        synchronized (lock) {
            p = process;
        }
        boolean graceful = p == null || terminate(p, grace);
        drainLog();
        synchronized (lock) {
            if (process == p) {
                process = null;
                hello = null;
                removeHook();
            }
        }
        if (p != null) {
            logger.info("local backend (pid {}) stopped{}", p.pid(), graceful ? "" : " forcibly");
        }
        return graceful;
    }

    /**
     * Stops a process and every process it started: SIGTERM, then a kill after the grace time.
     *
     * @param p the process
     * @param grace how long to wait after SIGTERM
     * @return true when it exited within the grace time
     */
    static boolean terminate(Process p, Duration grace) {
        List<ProcessHandle> children = p.descendants().collect(Collectors.toList());
        boolean exited = !p.isAlive();
        if (!exited) {
            p.destroy();
            exited = waitFor(p, grace);
            if (!exited) {
                p.destroyForcibly();
                waitFor(p, Duration.ofSeconds(5));
            }
        }
        for (ProcessHandle c : children) {
            if (c.isAlive()) {
                c.destroyForcibly();
                try {
                    c.onExit().get(2, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
                    logger.warn("process {} (started by the backend) did not exit after a kill", c.pid());
                }
            }
        }
        return exited;
    }

    private static boolean waitFor(Process p, Duration d) {
        try {
            return p.waitFor(d.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            p.destroyForcibly();
            return false;
        }
    }

    private void installHook(Process p) {
        Thread h = new Thread(() -> {
            stopRequested = true; // QuPath is quitting: the exit that follows is not "by itself"
            terminate(p, Duration.ofSeconds(5));
        }, "stimage-local-backend-shutdown");
        Runtime.getRuntime().addShutdownHook(h);
        hook = h;
    }

    private void removeHook() {
        Thread h = hook;
        hook = null;
        if (h != null) {
            try {
                Runtime.getRuntime().removeShutdownHook(h);
            } catch (IllegalStateException e) {
                // the JVM is shutting down: the hook runs anyway
            }
        }
    }

    private static void closeQuietly(Writer w) {
        if (w != null) {
            try {
                w.close();
            } catch (IOException e) {
                logger.debug("closing the log file: {}", e.toString());
            }
        }
    }

    private void setState(State s) {
        state = s;
        for (Consumer<State> l : stateListeners) {
            try {
                l.accept(s);
            } catch (RuntimeException e) {
                logger.warn("state listener failed: {}", e.toString());
            }
        }
    }

    /** Same as {@link #stop()}. */
    @Override
    public void close() {
        stop();
    }

    // -- what it is doing ---------------------------------------------------------------------

    /** @return the configuration */
    public Config getConfig() {
        return config;
    }

    /** @return where it is in its life */
    public State getState() {
        return state;
    }

    /** @return whether it is running and answered */
    public boolean isRunning() {
        Process p = process;
        return state == State.RUNNING && p != null && p.isAlive();
    }

    /** @return its address, {@code tcp://127.0.0.1:port} */
    public String getAddress() {
        return "tcp://" + HOST + ":" + config.getPort();
    }

    /** @return its process id while it has a process */
    public OptionalLong getPid() {
        Process p = process;
        return p == null ? OptionalLong.empty() : OptionalLong.of(p.pid());
    }

    /** @return its process while it has one (for tests and diagnostics), else null */
    public ProcessHandle getProcessHandle() {
        Process p = process;
        return p == null ? null : p.toHandle();
    }

    /** @return the hello it answered when it started, or null when not running */
    public HelloResult getHello() {
        return hello;
    }

    /** @return what differs between its release and the extension's, or null when they match */
    public String getVersionWarning() {
        return versionWarning;
    }

    /** @return the lines of its output kept in memory */
    public BoundedLog getLog() {
        return log;
    }

    /** @param listener called with each line of output (on the log thread) */
    public void addLogListener(Consumer<String> listener) {
        logListeners.add(Objects.requireNonNull(listener, "listener"));
    }

    /** @param listener a listener added before */
    public void removeLogListener(Consumer<String> listener) {
        logListeners.remove(listener);
    }

    /** @param listener called with each new state (on the thread that changes it) */
    public void addStateListener(Consumer<State> listener) {
        stateListeners.add(Objects.requireNonNull(listener, "listener"));
    }

    /** @param listener a listener added before */
    public void removeStateListener(Consumer<State> listener) {
        stateListeners.remove(listener);
    }

    static boolean isWindows() {
        return System.getProperty("os.name", "").toLowerCase(java.util.Locale.ROOT).startsWith("windows");
    }

    /** Where the environment is and how to serve: port, model, threads, device, log file. */
    public static final class Config {
        private final String environment;
        private final int port;
        private final String model;
        private final int threads;
        private final String device;
        private final Path logFile;

        private Config(Builder b) {
            this.environment = b.environment == null ? "" : b.environment.strip();
            OptionValues.range("Local backend", "port", b.port, 1, 65535);
            OptionValues.range("Local backend", "threads", b.threads, 0, 1024);
            this.port = b.port;
            this.model = b.model == null || b.model.isBlank() ? null : b.model.strip();
            this.threads = b.threads;
            this.device = b.device == null || b.device.isBlank() || "auto".equals(b.device.strip()) ? null
                    : b.device.strip();
            this.logFile = b.logFile != null ? b.logFile : Path.of(System.getProperty("java.io.tmpdir"),
                    "stimage-serve-" + port + ".log");
        }

        /**
         * @param environment the Python environment's folder, or its {@code stimage} program
         * @return a builder (port 5557, the bundled model, all threads, device auto)
         */
        public static Builder builder(String environment) {
            return new Builder(environment);
        }

        /** @return the Python environment as configured (not resolved) */
        public String getEnvironment() {
            return environment;
        }

        /** @return the port on 127.0.0.1 */
        public int getPort() {
            return port;
        }

        /** @return the model folder, or null for the bundled model */
        public String getModel() {
            return model;
        }

        /** @return CPU threads (0: the libraries' default, all cores) */
        public int getThreads() {
            return threads;
        }

        /** @return the device ({@code cpu}, {@code cuda}...), or null for auto */
        public String getDevice() {
            return device;
        }

        /** @return the log file (rewritten at each start) */
        public Path getLogFile() {
            return logFile;
        }

        @Override
        public String toString() {
            return "LocalBackend.Config[environment=" + environment + ", port=" + port + ", model=" + model
                    + ", threads=" + threads + ", device=" + device + ", log=" + logFile + "]";
        }

        /** Builds a {@link Config}. */
        public static final class Builder {
            private final String environment;
            private int port = 5557;
            private String model;
            private int threads;
            private String device;
            private Path logFile;

            private Builder(String environment) {
                this.environment = environment;
            }

            /**
             * @param port the port on 127.0.0.1 (default 5557)
             * @return this
             */
            public Builder port(int port) {
                this.port = port;
                return this;
            }

            /**
             * @param model a model folder, or null/blank for the bundled model
             * @return this
             */
            public Builder model(String model) {
                this.model = model;
                return this;
            }

            /**
             * @param threads CPU threads of PyTorch and the maths libraries (0: all cores)
             * @return this
             */
            public Builder threads(int threads) {
                this.threads = threads;
                return this;
            }

            /**
             * @param device {@code cpu}, {@code cuda}, {@code mps}..., or null/"auto"
             * @return this
             */
            public Builder device(String device) {
                this.device = device;
                return this;
            }

            /**
             * @param logFile where to write the output (default: the temporary folder's
             *     {@code stimage-serve-PORT.log})
             * @return this
             */
            public Builder logFile(Path logFile) {
                this.logFile = logFile;
                return this;
            }

            /**
             * @return the configuration
             * @throws IllegalArgumentException for a port or thread count out of range
             */
            public Config build() {
                return new Config(this);
            }
        }
    }
}

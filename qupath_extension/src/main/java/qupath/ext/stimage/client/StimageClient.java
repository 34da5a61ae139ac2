package qupath.ext.stimage.client;

import com.google.gson.JsonObject;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.zeromq.ZMQ;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A connection to a stimage server (protocol v1 over a ZeroMQ DEALER socket; see
 * docs/protocol.md). Pure Java: JeroMQ and Gson only.
 *
 * <p>Each call sends one request and waits for its one result, passing progress replies to a
 * {@link ProgressListener}; an error reply is thrown as a {@link ServerException} carrying the
 * server's code, message and details. A server that stops answering (stopped, restarted, crashed,
 * unreachable) is reported as {@code disconnected} once no reply or heartbeat came for the
 * heartbeat timeout; the socket is then dropped and the next call connects a fresh one (a new
 * identity), so requests work again as soon as the server is back.
 *
 * <p>Thread-safety: requests are serialised (one thread uses the socket at a time; others wait).
 * {@link #cancel(String)} and {@link CancelToken#cancel()} may be called from any thread while
 * another waits. Cancel with a token, not by interrupting the waiting thread: JeroMQ sockets do
 * not survive interrupts (an interrupt is treated as a cancel, but may also drop the socket).
 *
 * <p>Security: with {@link CurveKeys} the connection uses ZeroMQ CURVE (encrypted, and let in only
 * when the server, started with {@code stimage serve --curve-keys DIR}, has this client's public key
 * in {@code DIR/authorized/}). A server that closes every connection during the handshake (this
 * client's keys refused, the wrong server key, CURVE on one side only) is reported at once as
 * {@link ErrorCodes#HANDSHAKE_FAILED} rather than after the heartbeat timeout.
 */
public final class StimageClient implements AutoCloseable {
    /** The server's default address. */
    public static final String DEFAULT_ADDRESS = "tcp://127.0.0.1:5557";
    /** Sent in hello. */
    public static final String CLIENT_NAME = "qupath-extension-stimage";
    /** Sent in hello. */
    public static final String CLIENT_VERSION = "0.1.0";
    /** Timeout of hello, ping and cancel requests. */
    public static final Duration SHORT_TIMEOUT = Duration.ofSeconds(30);

    private static final Logger logger = LoggerFactory.getLogger(StimageClient.class);
    private static final long POLL_MS = 50;
    /** A connection closed this soon after it opened, before any reply, was closed in the handshake. */
    private static final long HANDSHAKE_NS = 1_000_000_000L;
    /** An open connection without the server's greeting for this long is dropped and made again. */
    private static final long GREETING_NS = 2_000_000_000L;
    /** The socket events watched (JeroMQ's zmq.ZMQ constants; org.zeromq.ZMQ lacks the handshake ones). */
    private static final int MONITORED = zmq.ZMQ.ZMQ_EVENT_CONNECTED | zmq.ZMQ.ZMQ_EVENT_DISCONNECTED
            | zmq.ZMQ.ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | zmq.ZMQ.ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.ZMQ.ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.ZMQ.ZMQ_EVENT_HANDSHAKE_PROTOCOL;

    private final String address;
    private final Duration timeout;
    private final Duration heartbeatTimeout;
    private final CurveKeys curve;
    private ZMQ.Context context;
    private final Object ioLock = new Object();
    private final Map<String, CancelToken> inFlight = new ConcurrentHashMap<>();
    private ZMQ.Socket socket;
    private ZMQ.Poller poller;
    private ZMQ.Socket monitor;
    private long connectedAt;
    private boolean dropped;
    private boolean greeted;
    private int authStatus;
    private boolean answered;
    private volatile boolean closed;

    /**
     * A client with a 600 s request timeout and a 15 s heartbeat timeout.
     *
     * @param address the server's endpoint, e.g. {@code tcp://127.0.0.1:5557}
     */
    public StimageClient(String address) {
        this(address, Duration.ofSeconds(600), Duration.ofSeconds(15));
    }

    /**
     * @param address the server's endpoint, e.g. {@code tcp://127.0.0.1:5557}
     * @param timeout how long a request may take (sent as its deadline)
     * @param heartbeatTimeout silence (no reply, no heartbeat) after which the server is taken
     *     for gone; keep it well above the server's {@code heartbeat_s} (1 s)
     */
    public StimageClient(String address, Duration timeout, Duration heartbeatTimeout) {
        this(address, timeout, heartbeatTimeout, null);
    }

    /**
     * @param address the server's endpoint, e.g. {@code tcp://gpu-server:5557}
     * @param timeout how long a request may take (sent as its deadline)
     * @param heartbeatTimeout silence (no reply, no heartbeat) after which the server is taken
     *     for gone; keep it well above the server's {@code heartbeat_s} (1 s)
     * @param curve the CURVE keys for a server started with {@code --curve-keys}, or null for a
     *     server without them (only on 127.0.0.1, or one started with {@code --insecure})
     */
    public StimageClient(String address, Duration timeout, Duration heartbeatTimeout, CurveKeys curve) {
        this.curve = curve;
        this.address = Objects.requireNonNull(address, "address must not be null");
        this.timeout = Objects.requireNonNull(timeout, "timeout must not be null");
        this.heartbeatTimeout = Objects.requireNonNull(heartbeatTimeout, "heartbeatTimeout must not be null");
        if (timeout.isNegative() || timeout.isZero() || heartbeatTimeout.isNegative() || heartbeatTimeout.isZero()) {
            throw new IllegalArgumentException("timeout and heartbeatTimeout must be positive");
        }
        this.context = ZMQ.context(1);
    }

    /** @return the server's endpoint */
    public String getAddress() {
        return address;
    }

    /** @return the request timeout */
    public Duration getTimeout() {
        return timeout;
    }

    /** @return the heartbeat timeout */
    public Duration getHeartbeatTimeout() {
        return heartbeatTimeout;
    }

    /** @return the CURVE keys, or null without CURVE */
    public CurveKeys getCurveKeys() {
        return curve;
    }

    // -- operations --------------------------------------------------------------------------

    /**
     * Server and protocol versions, models (genes, tile µm and px) and limits.
     *
     * @return the hello result
     * @throws ServerException an error reply, {@code disconnected}, or {@code unsupported_protocol}
     *     when the server does not speak protocol {@link Protocol#VERSION}
     */
    public HelloResult hello() throws ServerException {
        Reply r = request("hello", new HelloParams(CLIENT_NAME, CLIENT_VERSION), List.of(), null, null,
                SHORT_TIMEOUT);
        HelloResult hello = r.getResult(HelloResult.class);
        Protocol.checkHello(hello);
        return hello;
    }

    /**
     * @return the round-trip time
     * @throws ServerException {@code disconnected} when the server does not answer
     */
    public Duration ping() throws ServerException {
        long t0 = System.nanoTime();
        request("ping", null, List.of(), null, null, SHORT_TIMEOUT);
        return Duration.ofNanos(System.nanoTime() - t0);
    }

    /**
     * Predicts expression for tiles (or a slide the server reads).
     *
     * @param request the request
     * @param listener progress listener, or null
     * @param cancel cancel token, or null
     * @return the result: GeoJSON or a table
     * @throws ServerException the server's error (e.g. {@code wrong_scale}, {@code unknown_gene}),
     *     {@code cancelled}, {@code deadline} or {@code disconnected}
     */
    public PredictResult predict(PredictRequest request, ProgressListener listener, CancelToken cancel)
            throws ServerException {
        Objects.requireNonNull(request, "request must not be null");
        Duration deadline = request.getDeadline() != null ? request.getDeadline() : timeout;
        String id = request.getRequestId() != null ? request.getRequestId() : Protocol.newRequestId();
        RequestHeader header = Protocol.request(id, "predict", request.toParams(deadline));
        Reply r = exchange(header, request.getImages(), listener, cancel, deadline);
        return Protocol.attachTable(r.getResult(PredictResult.class), r.getFrames());
    }

    /**
     * Cancels a request of this client. For a request another thread is waiting for, that thread
     * sends the cancel and then throws {@code cancelled}; otherwise the server is asked.
     *
     * @param requestId the request id (see {@link CancelToken#getRequestId()})
     * @return whether a request in flight was (or is being) cancelled
     * @throws ServerException {@code disconnected} when the server does not answer
     */
    public boolean cancel(String requestId) throws ServerException {
        Objects.requireNonNull(requestId, "requestId must not be null");
        CancelToken token = inFlight.get(requestId);
        if (token != null) {
            token.cancel();
            return true;
        }
        Reply r = request("cancel", new CancelParams(requestId), List.of(), null, null, SHORT_TIMEOUT);
        return r.getResult(CancelResult.class).isCancelled();
    }

    /**
     * Sends one request and waits for its result (the low-level call under the operations).
     *
     * @param op the op
     * @param params a params DTO or JsonObject, or null
     * @param frames binary frames referenced by the params
     * @param listener progress listener, or null
     * @param cancel cancel token, or null
     * @param requestTimeout how long to wait for the result (null: the client's timeout)
     * @return the result reply
     * @throws ServerException the error reply, or {@code disconnected}, {@code deadline},
     *     {@code cancelled} decided here
     */
    public Reply request(String op, Object params, List<byte[]> frames, ProgressListener listener,
            CancelToken cancel, Duration requestTimeout) throws ServerException {
        RequestHeader header = Protocol.request(Protocol.newRequestId(), op, params);
        return exchange(header, frames, listener, cancel, requestTimeout == null ? timeout : requestTimeout);
    }

    /**
     * Sends a request header as given (tests use it to send other protocol versions).
     */
    Reply exchange(RequestHeader header, List<byte[]> frames, ProgressListener listener, CancelToken cancel,
            Duration requestTimeout) throws ServerException {
        String id = Objects.requireNonNull(header.getId(), "the request needs an id");
        CancelToken token = cancel != null ? cancel : new CancelToken();
        token.attach(id);
        List<byte[]> message = new ArrayList<>(frames.size() + 1);
        message.add(Protocol.encodeHeader(Protocol.toJsonTree(header)));
        message.addAll(frames);
        synchronized (ioLock) {
            if (closed) {
                throw new IllegalStateException("this client is closed");
            }
            if (inFlight.putIfAbsent(id, token) != null) {
                throw new IllegalArgumentException("request id '" + id + "' is already in flight");
            }
            boolean interrupted = false;
            try {
                ZMQ.Socket sock = socket();
                if (!sendMultipart(sock, message)) {
                    reset();
                    throw disconnected("could not send to " + address);
                }
                long start = System.nanoTime();
                long last = start;
                long timeoutNs = requestTimeout.toNanos();
                long heartbeatNs = heartbeatTimeout.toNanos();
                boolean cancelSent = false;
                while (true) {
                    if (Thread.interrupted()) {
                        interrupted = true;
                        token.cancel();
                    }
                    long now = System.nanoTime();
                    if (token.isCancelled() && !cancelSent) {
                        sendCancel(sock, id);
                        cancelSent = true;
                        last = now;
                    }
                    if (now - start > timeoutNs + heartbeatNs) {
                        if (!cancelSent) {
                            sendCancel(sock, id);
                        }
                        throw new ServerException(ErrorCodes.DEADLINE, "no result within "
                                + requestTimeout.toMillis() / 1000.0 + " s");
                    }
                    if (now - last > heartbeatNs) {
                        boolean handshake = !answered && handshakeFailing();
                        if (handshake) {
                            ServerException e = handshakeFailed();
                            resetContext();
                            throw e;
                        }
                        reset();
                        throw disconnected("no reply or heartbeat from " + address + " for "
                                + heartbeatTimeout.toMillis() / 1000.0 + " s: the server stopped, restarted or is "
                                + "unreachable" + (curve != null && !answered ? ", or it does not accept this "
                                + "client's CURVE keys" : "") + "; the next request reconnects");
                    }
                    List<byte[]> reply = receive(sock);
                    if (reply == null) {
                        if (!answered && handshakeFailing()) {
                            ServerException e = handshakeFailed();
                            resetContext();
                            throw e;
                        }
                        if (!answered && greetingStalled()) {
                            // nothing was delivered before the greeting: send again on a fresh connection
                            logger.debug("No ZeroMQ greeting from {} on an open connection; connecting again", address);
                            resetContext();
                            sock = socket();
                            if (!sendMultipart(sock, message)) {
                                reset();
                                throw disconnected("could not send to " + address);
                            }
                        }
                        continue;
                    }
                    answered = true;
                    ReplyHeader h;
                    try {
                        h = Protocol.decodeReplyHeader(Protocol.decodeHeader(reply.get(0)));
                    } catch (ServerException e) {
                        logger.warn("Ignoring a reply that is not a protocol header: {}", e.getServerMessage());
                        continue;
                    }
                    if (!id.equals(h.getId())) {
                        logger.debug("Ignoring a reply of request {} (waiting for {})", h.getId(), id);
                        continue;
                    }
                    last = System.nanoTime();
                    String kind = String.valueOf(h.getKind());
                    switch (kind) {
                        case Protocol.KIND_PROGRESS:
                            if (listener != null) {
                                notify(listener, h, sock, id, cancelSent);
                            }
                            break;
                        case Protocol.KIND_HEARTBEAT:
                            if (listener != null) {
                                listener.onHeartbeat();
                            }
                            break;
                        case Protocol.KIND_RESULT:
                            return new Reply(h, new ArrayList<>(reply.subList(1, reply.size())));
                        case Protocol.KIND_ERROR:
                            throw h.toException();
                        default:
                            logger.warn("Ignoring a reply of unknown kind '{}'", kind);
                    }
                }
            } finally {
                inFlight.remove(id);
                if (interrupted) {
                    Thread.currentThread().interrupt();
                }
            }
        }
    }

    private void notify(ProgressListener listener, ReplyHeader h, ZMQ.Socket sock, String id, boolean cancelSent) {
        try {
            listener.onProgress(h.getStage(), h.getDone(), h.getTotal());
        } catch (RuntimeException e) {
            if (!cancelSent) {
                sendCancel(sock, id);
            }
            throw e;
        }
    }

    private static ServerException disconnected(String message) {
        return new ServerException(ErrorCodes.DISCONNECTED, message);
    }

    private ServerException handshakeFailed() {
        String why;
        if (authStatus >= 0) {
            why = "it refused this client's key (authentication status " + authStatus + "): add this client's public "
                    + "key (" + (curve == null ? "?" : curve.getClientPublicKeyZ85()) + ", its client.key) to "
                    + "DIR/authorized/ on the server (DIR: the server's --curve-keys folder), or use the key files "
                    + "made with the server's keys";
        } else if (curve == null) {
            why = "it expects CURVE keys (started with --curve-keys DIR): give this client the server's server.key "
                    + "and a client.key_secret whose client.key is in DIR/authorized/ on the server";
        } else {
            why = "the server key given is not this server's (give the server.key of the folder it was started "
                    + "with, --curve-keys DIR), or the server runs without --curve-keys (then remove the keys here)";
        }
        return new ServerException(ErrorCodes.HANDSHAKE_FAILED, "the server at " + address
                + " closed the connection during the handshake: " + why);
    }

    /**
     * True when a connection opened but its ZeroMQ greeting has not come for a while: JeroMQ 0.6
     * now and then leaves a CURVE connection there forever. Nothing was delivered on it.
     */
    private boolean greetingStalled() {
        long wait = Math.min(GREETING_NS, heartbeatTimeout.toNanos() / 3);
        return monitor != null && connectedAt != 0 && !greeted && System.nanoTime() - connectedAt > wait;
    }

    /** Reads the socket monitor's events; true once the server closed a connection in its handshake. */
    @SuppressWarnings("deprecation") // ZMQ.Event: deprecated in JeroMQ 0.6 for ZMonitor, which needs a thread
    private boolean handshakeFailing() {
        if (monitor == null) {
            return false;
        }
        try {
            ZMQ.Event ev;
            while ((ev = ZMQ.Event.recv(monitor, ZMQ.DONTWAIT)) != null) {
                int e = ev.getEvent();
                long now = System.nanoTime();
                logger.debug("Socket event {} ({}) from {}", e, ev.getValue(), address);
                if (e == zmq.ZMQ.ZMQ_EVENT_CONNECTED) {
                    connectedAt = now;
                    greeted = false;
                } else if (e == zmq.ZMQ.ZMQ_EVENT_DISCONNECTED) {
                    // closed right after connecting, before any reply: the handshake was refused (without
                    // keys: before the greeting ended; after it, a plain server drops a connection only
                    // for a message over its size limits, which is not a key problem)
                    dropped |= connectedAt != 0 && now - connectedAt < HANDSHAKE_NS && (curve != null || !greeted);
                    connectedAt = 0;
                } else if (e == zmq.ZMQ.ZMQ_EVENT_HANDSHAKE_PROTOCOL) {
                    greeted = true;
                } else if (e == zmq.ZMQ.ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
                    authStatus = ev.getValue() instanceof Integer ? (Integer) ev.getValue() : 0;
                } else {
                    dropped = true;
                }
            }
        } catch (RuntimeException e) {
            logger.debug("Reading the socket monitor failed: {}", e.toString());
            return false;
        }
        return dropped || authStatus >= 0;
    }

    // -- socket ------------------------------------------------------------------------------

    @SuppressWarnings("deprecation") // Context.poller(int): deprecated in JeroMQ 0.3, current in 0.6
    private ZMQ.Socket socket() {
        if (socket == null) {
            ZMQ.Socket s = context.socket(ZMQ.DEALER);
            s.setLinger(0);
            s.setIdentity(("j-" + UUID.randomUUID()).getBytes(StandardCharsets.US_ASCII));
            s.setSendTimeOut((int) Math.min(Integer.MAX_VALUE, heartbeatTimeout.toMillis()));
            if (curve != null) {
                s.setCurveServerKey(curve.getServerPublicKey());
                s.setCurvePublicKey(curve.getClientPublicKey());
                s.setCurveSecretKey(curve.getClientSecretKey());
            }
            // connections and disconnections, to tell a refused handshake from a server that is not there
            String mon = "inproc://stimage-monitor-" + UUID.randomUUID();
            ZMQ.Socket m = null;
            if (s.monitor(mon, MONITORED)) {
                m = context.socket(ZMQ.PAIR);
                m.setLinger(0);
                m.connect(mon);
            }
            monitor = m;
            connectedAt = 0;
            dropped = false;
            greeted = false;
            authStatus = -1;
            answered = false;
            s.connect(address);
            ZMQ.Poller p = context.poller(1);
            p.register(s, ZMQ.Poller.POLLIN);
            socket = s;
            poller = p;
            logger.debug("Connected a DEALER socket to {}", address);
        }
        return socket;
    }

    /**
     * Drops the socket and the ZeroMQ context: after a refused CURVE handshake, JeroMQ 0.6 sometimes
     * leaves the next socket of the same context waiting for a handshake that never comes.
     */
    private void resetContext() {
        reset();
        try {
            context.term();
        } catch (RuntimeException e) {
            logger.debug("Closing the ZeroMQ context failed: {}", e.toString());
        }
        context = ZMQ.context(1);
    }

    private void reset() {
        if (socket != null) {
            try {
                poller.unregister(socket);
                socket.close();
            } catch (RuntimeException e) {
                logger.debug("Closing the socket failed: {}", e.toString());
            }
            socket = null;
            poller = null;
        }
        if (monitor != null) {
            try {
                monitor.close();
            } catch (RuntimeException e) {
                logger.debug("Closing the monitor failed: {}", e.toString());
            }
            monitor = null;
        }
    }

    private boolean sendMultipart(ZMQ.Socket sock, List<byte[]> frames) throws ServerException {
        try {
            for (int i = 0; i < frames.size(); i++) {
                if (!sock.send(frames.get(i), i < frames.size() - 1 ? ZMQ.SNDMORE : 0)) {
                    return false;
                }
            }
            return true;
        } catch (RuntimeException e) {
            reset();
            throw disconnected("sending to " + address + " failed (" + e + ")");
        }
    }

    /** @return the next message, or null when none arrived within the poll interval */
    private List<byte[]> receive(ZMQ.Socket sock) throws ServerException {
        try {
            if (poller.poll(POLL_MS) <= 0 || !poller.pollin(0)) {
                return null;
            }
            List<byte[]> out = new ArrayList<>();
            do {
                byte[] f = sock.recv(0);
                if (f == null) {
                    return null;
                }
                out.add(f);
            } while (sock.hasReceiveMore());
            return out;
        } catch (RuntimeException e) {
            reset();
            throw disconnected("receiving from " + address + " failed (" + e + "); the next request reconnects");
        }
    }

    private void sendCancel(ZMQ.Socket sock, String id) {
        RequestHeader h = Protocol.request(id + "-cancel", "cancel", new CancelParams(id));
        try {
            sock.send(Protocol.encodeHeader(Protocol.toJsonTree(h)), 0);
        } catch (RuntimeException e) {
            logger.debug("Sending the cancel of {} failed: {}", id, e.toString());
        }
    }

    /** Closes the socket and the ZeroMQ context; waits for a request in progress to end. */
    @Override
    public void close() {
        for (CancelToken t : inFlight.values()) {
            t.cancel();
        }
        synchronized (ioLock) {
            if (closed) {
                return;
            }
            closed = true;
            reset();
            context.term();
        }
    }
}

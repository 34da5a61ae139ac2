package qupath.ext.stimage.client;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The CURVE keys a client needs to talk to a server started with {@code stimage serve --curve-keys DIR}:
 * the server's public key and the client's key pair (ZeroMQ CURVE: the connection is encrypted, and
 * the server lets in only clients whose public key is in its {@code DIR/authorized/} folder).
 *
 * <p>The keys are read from the files {@code stimage serve --make-keys DIR} writes (ZeroMQ
 * certificate files, as {@code zmq.auth} and the Python client read them): {@code DIR/server.key}
 * (the server's public key; a 40-character Z85 key copied as text works too) and
 * {@code DIR/client.key_secret} (the client's public and secret key). Keep {@code server.key_secret}
 * on the server.
 *
 * <pre>{@code
 * CurveKeys keys = CurveKeys.fromFolder(Path.of("keys"));              // keys/server.key + keys/client.key_secret
 * CurveKeys keys = CurveKeys.load("keys/server.key", Path.of("keys/client.key_secret"));
 * new StimageClient("tcp://gpu-server:5557", Duration.ofMinutes(10), Duration.ofSeconds(15), keys);
 * }</pre>
 *
 * Every problem with a key or key file is an {@link IllegalArgumentException} whose message names
 * the file, what was wrong and what to give instead.
 */
public final class CurveKeys {
    /** The server's public key file in a folder made by {@code stimage serve --make-keys}. */
    public static final String SERVER_KEY_FILE = "server.key";
    /** The client's key pair file in that folder. */
    public static final String CLIENT_SECRET_FILE = "client.key_secret";
    /** Length of a Z85-encoded CURVE key. */
    public static final int Z85_LENGTH = 40;

    private static final String Z85_CHARS =
            "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    private static final Pattern KEY_LINE = Pattern.compile("^\\s*(public-key|secret-key)\\s*=\\s*(.*?)\\s*$");
    private static final String MAKE_KEYS = "create keys with `stimage serve --make-keys DIR`";
    private static final long MAX_FILE_BYTES = 64 * 1024;

    private final byte[] serverPublicKey;
    private final byte[] clientPublicKey;
    private final byte[] clientSecretKey;

    private CurveKeys(byte[] serverPublicKey, byte[] clientPublicKey, byte[] clientSecretKey) {
        this.serverPublicKey = serverPublicKey;
        this.clientPublicKey = clientPublicKey;
        this.clientSecretKey = clientSecretKey;
    }

    /**
     * @param serverPublicZ85 the server's public key (Z85, 40 characters)
     * @param clientPublicZ85 this client's public key
     * @param clientSecretZ85 this client's secret key
     * @return the keys
     * @throws IllegalArgumentException a key that is not 40 Z85 characters
     */
    public static CurveKeys of(String serverPublicZ85, String clientPublicZ85, String clientSecretZ85) {
        return new CurveKeys(z85Key(serverPublicZ85, "the server's public key"),
                z85Key(clientPublicZ85, "the client's public key"),
                z85Key(clientSecretZ85, "the client's secret key"));
    }

    /**
     * The keys in a folder made by {@code stimage serve --make-keys DIR}: {@code server.key} and
     * {@code client.key_secret} (what the Python client's {@code curve_keys=DIR} reads).
     *
     * @param folder the folder
     * @return the keys
     * @throws IllegalArgumentException a missing or unreadable key file
     */
    public static CurveKeys fromFolder(Path folder) {
        Objects.requireNonNull(folder, "folder must not be null");
        if (!Files.isDirectory(folder)) {
            throw new IllegalArgumentException(folder + ": no such folder of CURVE keys; " + MAKE_KEYS);
        }
        return load(folder.resolve(SERVER_KEY_FILE).toString(), folder.resolve(CLIENT_SECRET_FILE));
    }

    /**
     * @param serverKey the server's public key: the path of its {@code server.key} file, or the
     *     40-character Z85 key itself
     * @param clientSecretFile this client's {@code client.key_secret} file
     * @return the keys
     * @throws IllegalArgumentException a missing or unreadable key file, or a malformed key
     */
    public static CurveKeys load(String serverKey, Path clientSecretFile) {
        Objects.requireNonNull(serverKey, "serverKey must not be null");
        Objects.requireNonNull(clientSecretFile, "clientSecretFile must not be null");
        byte[] server = serverPublicKey(serverKey);
        String[] client = readCertificate(clientSecretFile);
        if (client[1] == null) {
            throw new IllegalArgumentException(clientSecretFile + " holds no secret key: give the client's "
                    + CLIENT_SECRET_FILE + " file (not client.key, which is only its public half)");
        }
        return new CurveKeys(server, z85Key(client[0], "the public key in " + clientSecretFile),
                z85Key(client[1], "the secret key in " + clientSecretFile));
    }

    /**
     * The server's public key from a key file or from its Z85 text.
     *
     * @param fileOrZ85 the path of {@code server.key}, or the 40-character Z85 key
     * @return the 32-byte key
     * @throws IllegalArgumentException neither a readable key file nor a Z85 key, or the server's
     *     secret key file (which must stay on the server)
     */
    public static byte[] serverPublicKey(String fileOrZ85) {
        String s = Objects.requireNonNull(fileOrZ85, "the server key must not be null").trim();
        if (s.isEmpty()) {
            throw new IllegalArgumentException("no server key given: give the server's " + SERVER_KEY_FILE
                    + " file (from `stimage serve --make-keys DIR`) or its 40-character key");
        }
        if (s.length() == Z85_LENGTH && isZ85(s) && !Files.exists(Path.of(s))) {
            return z85Decode(s);
        }
        Path file = Path.of(s);
        if (!Files.exists(file)) {
            throw new IllegalArgumentException("server key '" + s + "' is neither a key file nor a 40-character "
                    + "Z85 key: give the path of the server's " + SERVER_KEY_FILE + " (" + MAKE_KEYS
                    + " on the server) or the key written in it");
        }
        String[] cert = readCertificate(file);
        if (cert[1] != null) {
            throw new IllegalArgumentException(file + " holds the server's SECRET key: give the public "
                    + SERVER_KEY_FILE + " instead, and keep the secret one on the server only");
        }
        return z85Key(cert[0], "the public key in " + file);
    }

    /**
     * Reads a ZeroMQ certificate file (as written by {@code zmq.auth.create_certificates}).
     *
     * @param file the file
     * @return its public key and its secret key (null when it holds none), both Z85
     * @throws IllegalArgumentException a missing or unreadable file, or one without a public key
     */
    static String[] readCertificate(Path file) {
        if (!Files.isRegularFile(file)) {
            throw new IllegalArgumentException(file + ": no such key file; " + MAKE_KEYS
                    + " and give its " + SERVER_KEY_FILE + " and " + CLIENT_SECRET_FILE);
        }
        List<String> lines;
        try {
            if (Files.size(file) > MAX_FILE_BYTES) {
                throw new IllegalArgumentException(file + " is not a ZeroMQ key file (over 64 KiB); " + MAKE_KEYS);
            }
            lines = Files.readAllLines(file, StandardCharsets.UTF_8);
        } catch (IOException | java.io.UncheckedIOException e) {
            throw new IllegalArgumentException(file + ": cannot read this key file (" + e.getMessage() + ")", e);
        }
        String pub = null;
        String sec = null;
        for (String line : lines) {
            Matcher m = KEY_LINE.matcher(line);
            if (m.matches()) {
                String v = unquote(m.group(2));
                if ("public-key".equals(m.group(1))) {
                    pub = v;
                } else {
                    sec = v;
                }
            }
        }
        if (pub == null) {
            throw new IllegalArgumentException(file + " is not a ZeroMQ certificate (no 'public-key = \"...\"' "
                    + "line); give the key files `stimage serve --make-keys DIR` writes");
        }
        return new String[] {pub, sec};
    }

    private static String unquote(String v) {
        if (v.length() >= 2 && (v.charAt(0) == '"' || v.charAt(0) == '\'') && v.charAt(v.length() - 1) == v.charAt(0)) {
            return v.substring(1, v.length() - 1);
        }
        return v;
    }

    private static boolean isZ85(String s) {
        for (int i = 0; i < s.length(); i++) {
            if (Z85_CHARS.indexOf(s.charAt(i)) < 0) {
                return false;
            }
        }
        return true;
    }

    private static byte[] z85Key(String z85, String what) {
        if (z85 == null || z85.length() != Z85_LENGTH || !isZ85(z85)) {
            throw new IllegalArgumentException(what + " is not a CURVE key (40 Z85 characters), got "
                    + (z85 == null ? "nothing" : z85.length() + " characters")
                    + "; give the key files `stimage serve --make-keys DIR` writes");
        }
        return z85Decode(z85);
    }

    /** Z85 (ZeroMQ RFC 32) decoding of a 40-character key into 32 bytes. */
    static byte[] z85Decode(String z85) {
        byte[] out = new byte[z85.length() / 5 * 4];
        for (int i = 0, o = 0; i < z85.length(); i += 5) {
            long v = 0;
            for (int j = 0; j < 5; j++) {
                v = v * 85 + Z85_CHARS.indexOf(z85.charAt(i + j));
            }
            if (v > 0xFFFFFFFFL) {
                throw new IllegalArgumentException("'" + z85 + "' is not a valid Z85 key (a group exceeds 32 bits)");
            }
            out[o++] = (byte) (v >>> 24);
            out[o++] = (byte) (v >>> 16);
            out[o++] = (byte) (v >>> 8);
            out[o++] = (byte) v;
        }
        return out;
    }

    /** Z85 encoding of a key (for messages and tests). */
    static String z85Encode(byte[] key) {
        StringBuilder sb = new StringBuilder(key.length / 4 * 5);
        for (int i = 0; i < key.length; i += 4) {
            long v = ((key[i] & 0xFFL) << 24) | ((key[i + 1] & 0xFFL) << 16) | ((key[i + 2] & 0xFFL) << 8)
                    | (key[i + 3] & 0xFFL);
            char[] c = new char[5];
            for (int j = 4; j >= 0; j--) {
                c[j] = Z85_CHARS.charAt((int) (v % 85));
                v /= 85;
            }
            sb.append(c);
        }
        return sb.toString();
    }

    /** @return the server's public key (32 bytes, a copy) */
    public byte[] getServerPublicKey() {
        return serverPublicKey.clone();
    }

    /** @return this client's public key (32 bytes, a copy) */
    public byte[] getClientPublicKey() {
        return clientPublicKey.clone();
    }

    /** @return this client's secret key (32 bytes, a copy) */
    byte[] getClientSecretKey() {
        return clientSecretKey.clone();
    }

    /** @return the server's public key in Z85 (what {@code server.key} holds) */
    public String getServerPublicKeyZ85() {
        return z85Encode(serverPublicKey);
    }

    /** @return this client's public key in Z85 (what the server's {@code authorized/} folder must hold) */
    public String getClientPublicKeyZ85() {
        return z85Encode(clientPublicKey);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof CurveKeys && Arrays.equals(serverPublicKey, ((CurveKeys) o).serverPublicKey)
                && Arrays.equals(clientPublicKey, ((CurveKeys) o).clientPublicKey)
                && Arrays.equals(clientSecretKey, ((CurveKeys) o).clientSecretKey);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(serverPublicKey) * 31 + Arrays.hashCode(clientPublicKey);
    }

    /** Never prints the secret key. */
    @Override
    public String toString() {
        return "CurveKeys[server " + getServerPublicKeyZ85() + ", client " + getClientPublicKeyZ85() + "]";
    }
}

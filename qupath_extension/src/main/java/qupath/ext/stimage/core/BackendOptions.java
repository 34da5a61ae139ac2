package qupath.ext.stimage.core;

import qupath.ext.stimage.client.StimageClient;

import java.net.URI;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Options every operation has: the backend's address, the timeout of one request, and the
 * image's µm per pixel when the user gives it (overriding, or standing in for, the image's
 * calibration).
 */
public abstract class BackendOptions {
    /** Default timeout of one request, in seconds. */
    public static final int DEFAULT_TIMEOUT_S = 600;
    /** Longest timeout the protocol allows (a day). */
    public static final int MAX_TIMEOUT_S = 86400;

    /** Option keys shared by all operations. */
    static final List<String> COMMON_KEYS = List.of("server", "timeout", "mpp");

    private final String server;
    private final int timeoutS;
    private final Double mpp;

    BackendOptions(String what, String server, int timeoutS, Double mpp) {
        this.server = checkAddress(what, server == null ? StimageClient.DEFAULT_ADDRESS : server);
        OptionValues.range(what, "timeout", timeoutS, 1, MAX_TIMEOUT_S);
        this.timeoutS = timeoutS;
        if (mpp != null) {
            OptionValues.range(what, "mpp", mpp, PixelSize.MIN_UM, PixelSize.MAX_UM);
        }
        this.mpp = mpp;
    }

    /**
     * @param what the options' name, for messages
     * @param address a ZeroMQ TCP address
     * @return the address, trimmed
     * @throws IllegalArgumentException when it is not {@code tcp://host:port}
     */
    public static String checkAddress(String what, String address) {
        String a = address.trim();
        try {
            URI uri = URI.create(a);
            if ("tcp".equals(uri.getScheme()) && uri.getHost() != null && uri.getPort() > 0) {
                return a;
            }
        } catch (IllegalArgumentException e) {
            // below
        }
        throw new IllegalArgumentException(what + ": option 'server' must be an address like "
                + StimageClient.DEFAULT_ADDRESS + "; got '" + address + "'");
    }

    /** @return the backend's address, {@code tcp://host:port} */
    public String getServer() {
        return server;
    }

    /** @return the timeout of one request in seconds */
    public int getTimeoutS() {
        return timeoutS;
    }

    /** @return the µm per pixel the user gave, or null to use the image's */
    public Double getMpp() {
        return mpp;
    }

    /**
     * The options as a map that {@code fromMap} reads back (the script line of the workflow).
     *
     * @return the options, in a stable order, without unset ones
     */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("server", server);
        putOwn(m);
        m.put("timeout", timeoutS);
        if (mpp != null) {
            m.put("mpp", mpp);
        }
        return m;
    }

    abstract void putOwn(Map<String, Object> map);

    @Override
    public String toString() {
        return getClass().getSimpleName() + toMap();
    }

    @Override
    public boolean equals(Object o) {
        return o != null && o.getClass() == getClass() && ((BackendOptions) o).toMap().equals(toMap());
    }

    @Override
    public int hashCode() {
        return toMap().hashCode();
    }

    /** Shared builder state. */
    @SuppressWarnings("unchecked")
    abstract static class AbstractBuilder<B extends AbstractBuilder<B>> {
        String server;
        int timeoutS = DEFAULT_TIMEOUT_S;
        Double mpp;

        /**
         * @param server the backend's address (default {@code tcp://127.0.0.1:5557})
         * @return this
         */
        public B server(String server) {
            this.server = server;
            return (B) this;
        }

        /**
         * @param seconds the timeout of one request (default 600)
         * @return this
         */
        public B timeout(int seconds) {
            this.timeoutS = seconds;
            return (B) this;
        }

        /**
         * @param mpp µm per pixel of the image's full resolution, or null to use the image's
         * @return this
         */
        public B mpp(Double mpp) {
            this.mpp = mpp;
            return (B) this;
        }

        void common(OptionValues v) {
            if (v.has("server")) {
                server(v.string("server"));
            }
            if (v.has("timeout")) {
                timeout(v.integer("timeout"));
            }
            if (v.has("mpp")) {
                mpp(v.number("mpp"));
            }
        }
    }
}

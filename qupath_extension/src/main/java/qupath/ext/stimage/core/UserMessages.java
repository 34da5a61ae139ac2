package qupath.ext.stimage.core;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.Protocol;
import qupath.ext.stimage.client.ServerException;

import java.io.IOException;
import java.net.URI;
import java.util.Locale;
import java.util.concurrent.CancellationException;

/**
 * Turns what can go wrong into the {@link UserMessage} a dialog shows: the backend's errors
 * (by their stable codes, docs/protocol.md), the client's {@code disconnected}, the extension's
 * own {@link StimageException}s, bad options, unreadable images. Every message says what was
 * wrong and what to do; the backend's own sentence is kept where it has one.
 */
public final class UserMessages {
    /** Where to change the server address and defaults. */
    public static final String SETTINGS = "Extensions > STImage > Backend settings...";

    private UserMessages() {
    }

    /**
     * @param error what went wrong
     * @param address the backend's address (for messages about reaching it)
     * @return the message to show
     */
    public static UserMessage of(Throwable error, String address) {
        if (error instanceof StimageException) {
            return ((StimageException) error).getUserMessage();
        }
        if (error instanceof ServerException) {
            return of((ServerException) error, address);
        }
        if (error instanceof CancellationException || error instanceof InterruptedException) {
            return cancelled();
        }
        if (error instanceof IllegalArgumentException) {
            return new UserMessage(UserMessage.Severity.WARNING, "Invalid options", error.getMessage(), null);
        }
        if (error instanceof IOException) {
            return new UserMessage(UserMessage.Severity.ERROR, "Could not read the image",
                    "QuPath could not read pixels of this image (" + error.getMessage()
                            + "). Check that the image file is still reachable, then try again.", null);
        }
        return new UserMessage(UserMessage.Severity.ERROR, "Unexpected error",
                error.getClass().getSimpleName() + (error.getMessage() == null ? "" : ": " + error.getMessage())
                        + ". This is a bug in the STImage extension; the details are in QuPath's log "
                        + "(View > Show log).", null);
    }

    /**
     * @param e an error reply of the backend, or one the client decided
     * @param address the backend's address
     * @return the message to show
     */
    public static UserMessage of(ServerException e, String address) {
        String code = e.getCode();
        String said = sentence(e.getServerMessage());
        switch (code) {
            case ErrorCodes.DISCONNECTED:
                return new UserMessage(UserMessage.Severity.ERROR, "STImage backend not running",
                        "No answer from the STImage backend at " + address + ": it is not running, still "
                                + "loading its models, or unreachable. Start it in a terminal of the Python "
                                + "environment where stimage is installed with the command below, wait for the "
                                + "line 'stimage server on ...', then try again. The address is set in "
                                + "Extensions > STImage > Backend settings.", serveCommand(address));
            case ErrorCodes.HANDSHAKE_FAILED:
                return new UserMessage(UserMessage.Severity.ERROR, "STImage backend refused the connection",
                        said + " Set the CURVE keys in " + SETTINGS + ": the server key (server.key) and "
                                + "this client's key file (client.key_secret) from the folder made with "
                                + "`stimage serve --make-keys DIR` for the backend started with --curve-keys DIR.",
                        null);
            case ErrorCodes.UNAVAILABLE:
                return new UserMessage(UserMessage.Severity.ERROR, "STImage backend stopped",
                        "The STImage backend at " + address + " is shutting down. Start it again with the "
                                + "command below, then try again.", serveCommand(address));
            case ErrorCodes.UNKNOWN_MODEL:
                return new UserMessage(UserMessage.Severity.ERROR, "Model missing",
                        said + " Choose one of the backend's models in " + SETTINGS + " (leave the model "
                                + "empty for the backend's default), or start the backend with that model "
                                + "folder.", "stimage serve --model /path/to/model-folder");
            case ErrorCodes.UNSUPPORTED_PROTOCOL:
                return new UserMessage(UserMessage.Severity.ERROR, "Protocol version mismatch",
                        "This extension speaks STImage protocol " + Protocol.VERSION + "; the backend at "
                                + address + " speaks protocol " + serverProtocols(e) + ". Install the "
                                + "extension and the stimage Python package from the same release.", null);
            case ErrorCodes.UNKNOWN_OP:
                return new UserMessage(UserMessage.Severity.ERROR, "Backend too old",
                        said + " The backend at " + address + " does not offer this operation: update the "
                                + "stimage Python package to the extension's release.", null);
            case ErrorCodes.UNKNOWN_GENE:
                return new UserMessage(UserMessage.Severity.WARNING, "Unknown gene",
                        said + " Leave the genes empty for all genes of the model, or pick genes from the "
                                + "model's list in Extensions > STImage > Backend settings.", null);
            case ErrorCodes.WRONG_SCALE:
                return new UserMessage(UserMessage.Severity.ERROR, "Wrong tile size",
                        said + " Check the image's pixel size (Image tab): a wrong µm per pixel makes tiles "
                                + "of the wrong physical size.", null);
            case ErrorCodes.NO_TISSUE:
                return new UserMessage(UserMessage.Severity.WARNING, "No tissue",
                        said + " Select an annotation on tissue, or lower the minimum tissue fraction.", null);
            case ErrorCodes.NO_NUCLEI:
                return new UserMessage(UserMessage.Severity.WARNING, "No nuclei in this tile",
                        said + " Select a tile that holds cells.", null);
            case ErrorCodes.TOO_LARGE:
                return new UserMessage(UserMessage.Severity.ERROR, "Request too large",
                        said + " Lower the batch size in " + SETTINGS + ", or select a smaller region.", null);
            case ErrorCodes.BUSY:
                return new UserMessage(UserMessage.Severity.WARNING, "Backend busy",
                        said + " Other clients are using the backend; try again in a moment.", null);
            case ErrorCodes.DEADLINE:
                return new UserMessage(UserMessage.Severity.ERROR, "Timed out",
                        said + " Raise the timeout in " + SETTINGS + ", select a smaller region, or run the "
                                + "backend on a GPU.", null);
            case ErrorCodes.CANCELLED:
                return cancelled();
            case ErrorCodes.BAD_REQUEST:
                return new UserMessage(UserMessage.Severity.ERROR, "Request refused",
                        said + " The extension and the backend disagree about the protocol: install both from "
                                + "the same release.", null);
            case ErrorCodes.BAD_IMAGE:
                return new UserMessage(UserMessage.Severity.ERROR, "Unreadable tile",
                        said + " QuPath read pixels the backend could not decode; check the image, or report "
                                + "this with the backend's log.", null);
            case ErrorCodes.FORBIDDEN_PATH:
            case ErrorCodes.NOT_FOUND:
                return new UserMessage(UserMessage.Severity.ERROR, "Slide not available to the backend",
                        said + " Start the backend with --allow-root for the slides' folder, or let QuPath "
                                + "send the pixels.", null);
            case ErrorCodes.INTERNAL:
                return new UserMessage(UserMessage.Severity.ERROR, "Backend error",
                        said + " This is a bug in the backend: its terminal output has the details.", null);
            default:
                return new UserMessage(UserMessage.Severity.ERROR, "Backend error (" + code + ")", said, null);
        }
    }

    /** @return the message of a cancelled run */
    public static UserMessage cancelled() {
        return new UserMessage(UserMessage.Severity.INFO, "Cancelled",
                "The run was cancelled; no objects were changed.", null);
    }

    /**
     * The command that starts a backend listening at an address.
     *
     * @param address {@code tcp://host:port}
     * @return {@code stimage serve} with the options the address needs
     */
    public static String serveCommand(String address) {
        String host = "127.0.0.1";
        int port = 5557;
        try {
            URI uri = URI.create(address.trim());
            if (uri.getHost() != null) {
                host = uri.getHost();
            }
            if (uri.getPort() > 0) {
                port = uri.getPort();
            }
        } catch (IllegalArgumentException | NullPointerException e) {
            return "stimage serve";
        }
        String portOpt = port == 5557 ? "" : " --port " + port;
        String h = host.toLowerCase(Locale.ROOT);
        if (h.equals("127.0.0.1") || h.equals("localhost") || h.equals("[::1]") || h.equals("::1")) {
            return "stimage serve" + portOpt;
        }
        return "stimage serve --host 0.0.0.0" + portOpt + " --insecure   (on " + host + ")";
    }

    private static String serverProtocols(ServerException e) {
        JsonObject d = e.getDetails();
        JsonElement p = d.get("server_protocols");
        if (p != null && p.isJsonArray() && p.getAsJsonArray().size() > 0) {
            StringBuilder sb = new StringBuilder();
            for (JsonElement v : p.getAsJsonArray()) {
                if (sb.length() > 0) {
                    sb.append(", ");
                }
                sb.append(v.getAsString());
            }
            return sb.toString();
        }
        return "(not told)";
    }

    private static String sentence(String s) {
        if (s == null || s.isBlank()) {
            return "The backend gave no reason.";
        }
        String t = s.strip();
        t = Character.toUpperCase(t.charAt(0)) + t.substring(1);
        return t.endsWith(".") ? t : t + ".";
    }
}

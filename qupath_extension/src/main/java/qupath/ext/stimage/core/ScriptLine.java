package qupath.ext.stimage.core;

import java.util.Collection;
import java.util.Map;

/**
 * The Groovy line a run records in QuPath's workflow history, so that "Create script" and
 * "Run for project" repeat it:
 * {@code qupath.ext.stimage.STImage.predict(getCurrentImageData(), [server: 'tcp://127.0.0.1:5557', ...])}.
 * The options are written as a Groovy map literal that {@code fromMap} reads back.
 */
public final class ScriptLine {
    /** The class scripts call. */
    public static final String API_CLASS = "qupath.ext.stimage.STImage";

    private ScriptLine() {
    }

    /**
     * @param method the static method of {@link #API_CLASS} ({@code predict}, {@code detectCells}, {@code explain})
     * @param options the options
     * @return the script line
     */
    public static String of(String method, BackendOptions options) {
        return API_CLASS + "." + method + "(getCurrentImageData(), " + groovyLiteral(options.toMap()) + ")";
    }

    /**
     * A value as a Groovy literal: maps as {@code [key: value]}, lists as {@code ['a', 'b']},
     * text single-quoted, numbers and booleans as they are.
     *
     * @param value a map, collection, text, number, boolean or null
     * @return the literal
     */
    public static String groovyLiteral(Object value) {
        if (value == null) {
            return "null";
        }
        if (value instanceof Map) {
            Map<?, ?> m = (Map<?, ?>) value;
            if (m.isEmpty()) {
                return "[:]";
            }
            StringBuilder sb = new StringBuilder("[");
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (sb.length() > 1) {
                    sb.append(", ");
                }
                String k = String.valueOf(e.getKey());
                sb.append(k.matches("[A-Za-z_][A-Za-z0-9_]*") ? k : quote(k)).append(": ")
                        .append(groovyLiteral(e.getValue()));
            }
            return sb.append("]").toString();
        }
        if (value instanceof Collection) {
            StringBuilder sb = new StringBuilder("[");
            for (Object o : (Collection<?>) value) {
                if (sb.length() > 1) {
                    sb.append(", ");
                }
                sb.append(groovyLiteral(o));
            }
            return sb.append("]").toString();
        }
        if (value instanceof Boolean || value instanceof Integer || value instanceof Long) {
            return value.toString();
        }
        if (value instanceof Number) {
            double d = ((Number) value).doubleValue();
            if (!Double.isFinite(d)) {
                throw new IllegalArgumentException("cannot write " + d + " in a script");
            }
            return d == Math.rint(d) && Math.abs(d) < 1e15 ? String.valueOf((long) d) : String.valueOf(d);
        }
        return quote(value.toString());
    }

    private static String quote(String s) {
        StringBuilder sb = new StringBuilder("'");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '\\':
                    sb.append("\\\\");
                    break;
                case '\'':
                    sb.append("\\'");
                    break;
                case '\n':
                    sb.append("\\n");
                    break;
                case '\r':
                    sb.append("\\r");
                    break;
                case '\t':
                    sb.append("\\t");
                    break;
                default:
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        return sb.append("'").toString();
    }
}

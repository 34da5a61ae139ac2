package qupath.ext.stimage.ui;

import javafx.event.ActionEvent;
import javafx.geometry.Insets;
import javafx.scene.Node;
import javafx.scene.control.Button;
import javafx.scene.control.ButtonType;
import javafx.scene.control.CheckBox;
import javafx.scene.control.ChoiceBox;
import javafx.scene.control.ComboBox;
import javafx.scene.control.Dialog;
import javafx.scene.control.Label;
import javafx.scene.control.Spinner;
import javafx.scene.control.TextField;
import javafx.scene.control.Tooltip;
import javafx.scene.layout.GridPane;
import javafx.stage.Window;
import qupath.ext.stimage.client.HelloResult;
import qupath.ext.stimage.client.ModelInfo;
import qupath.ext.stimage.core.CellsOptions;
import qupath.ext.stimage.core.ExplainOptions;
import qupath.ext.stimage.core.PredictOptions;
import qupath.ext.stimage.core.Region;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.function.Supplier;

/**
 * The dialogs that ask for a run's options, filled from the backend's hello (models, genes, tile
 * size) and the preferences. Each returns the options, or empty when the user cancels; invalid
 * input keeps the dialog open with the reason shown in red. Call on the JavaFX thread.
 */
final class OptionDialogs {
    /** What the dialogs need to know about the current image. */
    static final class ImageState {
        final String name;
        final String pixelSize;
        final int selectedAnnotations;

        /**
         * @param name the image's name
         * @param pixelSize its pixel size as text, or null when it has none
         * @param selectedAnnotations selected area annotations
         */
        ImageState(String name, String pixelSize, int selectedAnnotations) {
            this.name = name;
            this.pixelSize = pixelSize;
            this.selectedAnnotations = selectedAnnotations;
        }
    }

    private OptionDialogs() {
    }

    static Optional<PredictOptions> predict(Window owner, HelloResult hello, ImageState image) {
        Dialog<ButtonType> d = dialog(owner, "Predict expression", "Predict gene expression on '" + image.name + "'");
        GridPane g = grid();
        ComboBox<String> model = modelBox(hello);
        Label modelInfo = new Label();
        model.valueProperty().addListener((o, a, b) -> modelInfo.setText(describe(modelOf(hello, b))));
        modelInfo.setText(describe(modelOf(hello, model.getValue())));
        TextField genes = new TextField(StimagePrefs.genesProperty().get());
        genes.setPromptText("all genes of the model");
        genes.setTooltip(new Tooltip("Genes separated by commas, e.g. ERBB2, GATA3; empty for all"));
        ChoiceBox<Region> region = regionBox(image);
        TextField mpp = new TextField();
        Spinner<Integer> minTissue = new Spinner<>(0, 100, (int) Math.round(StimagePrefs.minTissueProperty().get() * 100));
        minTissue.setEditable(true);
        Spinner<Integer> batch = new Spinner<>(1, 512, StimagePrefs.batchSizeProperty().get());
        batch.setEditable(true);
        int r = 0;
        g.addRow(r++, new Label("Model"), model);
        g.add(modelInfo, 1, r++);
        g.addRow(r++, new Label("Genes"), genes);
        g.addRow(r++, new Label("Region"), region);
        r = pixelSizeRow(g, r, image, mpp);
        g.addRow(r++, new Label("Min. tissue per tile (%)"), minTissue);
        g.addRow(r++, new Label("Tiles per request"), batch);
        Label error = errorLabel();
        g.add(error, 0, r, 2, 1);
        Supplier<PredictOptions> build = () -> PredictOptions.builder()
                .server(StimagePrefs.server())
                .timeout(StimagePrefs.timeoutS())
                .model(modelName(model.getValue()))
                .genes(genes.getText())
                .region(region.getValue())
                .mpp(parseMpp(mpp, image))
                .minTissue(minTissue.getValue() / 100.0)
                .batchSize(batch.getValue())
                .build();
        Optional<PredictOptions> out = run(d, g, error, build);
        out.ifPresent(o -> {
            StimagePrefs.genesProperty().set(genes.getText().trim());
            StimagePrefs.minTissueProperty().set(o.getMinTissue());
            StimagePrefs.batchSizeProperty().set(o.getBatchSize());
            StimagePrefs.modelProperty().set(o.getModel() == null ? "" : o.getModel());
        });
        return out;
    }

    static Optional<CellsOptions> cells(Window owner, ImageState image) {
        Dialog<ButtonType> d = dialog(owner, "Detect cells", "Segment and type the cells of '" + image.name + "'");
        GridPane g = grid();
        ChoiceBox<Region> region = regionBox(image);
        CheckBox classify = new CheckBox("Type the cells (tumour, immune, stromal...)");
        classify.setSelected(true);
        TextField mpp = new TextField();
        int r = 0;
        g.addRow(r++, new Label("Region"), region);
        g.add(classify, 1, r++);
        r = pixelSizeRow(g, r, image, mpp);
        Label error = errorLabel();
        g.add(error, 0, r, 2, 1);
        return run(d, g, error, () -> CellsOptions.builder()
                .server(StimagePrefs.server())
                .timeout(StimagePrefs.timeoutS())
                .region(region.getValue())
                .classify(classify.isSelected())
                .mpp(parseMpp(mpp, image))
                .build());
    }

    static Optional<ExplainOptions> explain(Window owner, HelloResult hello, ImageState image, String tileText) {
        Dialog<ButtonType> d = dialog(owner, "Explain tile", "Explain " + tileText + ": which nuclei drive a gene's "
                + "prediction");
        GridPane g = grid();
        ComboBox<String> model = modelBox(hello);
        ComboBox<String> gene = new ComboBox<>();
        gene.setEditable(true);
        Runnable fillGenes = () -> {
            ModelInfo m = modelOf(hello, model.getValue());
            gene.getItems().setAll(m == null ? List.of() : m.getGenes());
            List<String> pref = new ArrayList<>(List.of(StimagePrefs.genesProperty().get().split("[,;\\s]+")));
            pref.removeIf(String::isBlank);
            gene.setValue(!pref.isEmpty() ? pref.get(0) : gene.getItems().isEmpty() ? "" : gene.getItems().get(0));
        };
        model.valueProperty().addListener((o, a, b) -> fillGenes.run());
        fillGenes.run();
        gene.setTooltip(new Tooltip("One gene, or several separated by commas (up to 50)"));
        ChoiceBox<String> method = new ChoiceBox<>();
        method.getItems().setAll("lime", "occlusion");
        method.setValue("lime");
        ChoiceBox<String> target = new ChoiceBox<>();
        target.getItems().setAll("mean", "p_high");
        target.setValue("mean");
        Spinner<Integer> samples = new Spinner<>(10, 10000, ExplainOptions.DEFAULT_NUM_SAMPLES, 100);
        samples.setEditable(true);
        TextField mpp = new TextField();
        int r = 0;
        g.addRow(r++, new Label("Model"), model);
        g.addRow(r++, new Label("Gene(s)"), gene);
        g.addRow(r++, new Label("Method"), method);
        g.addRow(r++, new Label("Explain"), target);
        g.addRow(r++, new Label("LIME samples"), samples);
        r = pixelSizeRow(g, r, image, mpp);
        Label error = errorLabel();
        g.add(error, 0, r, 2, 1);
        return run(d, g, error, () -> ExplainOptions.builder()
                .server(StimagePrefs.server())
                .timeout(StimagePrefs.timeoutS())
                .model(modelName(model.getValue()))
                .genes(gene.getEditor().getText() == null || gene.getEditor().getText().isBlank()
                        ? String.valueOf(gene.getValue()) : gene.getEditor().getText())
                .method(method.getValue())
                .target(target.getValue())
                .numSamples(samples.getValue())
                .mpp(parseMpp(mpp, image))
                .build());
    }

    // -- helpers -----------------------------------------------------------------------------

    private static final String DEFAULT_MODEL = "(backend default)";

    private static Dialog<ButtonType> dialog(Window owner, String title, String header) {
        Dialog<ButtonType> d = new Dialog<>();
        if (owner != null) {
            d.initOwner(owner);
        }
        d.setTitle("STImage: " + title);
        d.setHeaderText(header);
        d.getDialogPane().getButtonTypes().setAll(ButtonType.OK, ButtonType.CANCEL);
        d.setResizable(true);
        return d;
    }

    private static GridPane grid() {
        GridPane g = new GridPane();
        g.setHgap(10);
        g.setVgap(8);
        g.setPadding(new Insets(10));
        return g;
    }

    private static Label errorLabel() {
        Label l = new Label();
        l.setStyle("-fx-text-fill: #c00000;");
        l.setWrapText(true);
        l.setMaxWidth(460);
        return l;
    }

    private static <T> Optional<T> run(Dialog<ButtonType> d, Node content, Label error, Supplier<T> build) {
        d.getDialogPane().setContent(content);
        Object[] result = new Object[1];
        Button ok = (Button) d.getDialogPane().lookupButton(ButtonType.OK);
        ok.addEventFilter(ActionEvent.ACTION, e -> {
            try {
                result[0] = build.get();
            } catch (IllegalArgumentException ex) {
                error.setText(ex.getMessage());
                e.consume();
            }
        });
        Optional<ButtonType> b = d.showAndWait();
        if (b.isPresent() && b.get() == ButtonType.OK && result[0] != null) {
            @SuppressWarnings("unchecked")
            T t = (T) result[0];
            return Optional.of(t);
        }
        return Optional.empty();
    }

    private static ComboBox<String> modelBox(HelloResult hello) {
        ComboBox<String> box = new ComboBox<>();
        box.getItems().add(DEFAULT_MODEL);
        for (ModelInfo m : hello.getModels()) {
            box.getItems().add(m.getName());
        }
        String pref = StimagePrefs.modelProperty().get();
        box.setValue(pref != null && hello.getModel(pref) != null ? pref : DEFAULT_MODEL);
        return box;
    }

    private static String modelName(String value) {
        return value == null || DEFAULT_MODEL.equals(value) ? null : value;
    }

    private static ModelInfo modelOf(HelloResult hello, String value) {
        String n = modelName(value);
        return n == null ? hello.getDefaultModel() : hello.getModel(n);
    }

    private static String describe(ModelInfo m) {
        if (m == null) {
            return "the backend serves no model";
        }
        return m.getGenes().size() + " genes, " + fmt(m.getTileUm()) + " µm tiles" + (m.getDescription() == null
                ? "" : "; " + shorten(m.getDescription(), 80));
    }

    private static ChoiceBox<Region> regionBox(ImageState image) {
        ChoiceBox<Region> box = new ChoiceBox<>();
        box.getItems().setAll(Region.values());
        box.setValue(Region.SELECTED);
        box.setConverter(new javafx.util.StringConverter<Region>() {
            @Override
            public String toString(Region r) {
                if (r == null) {
                    return "";
                }
                switch (r) {
                    case SELECTED:
                        return image.selectedAnnotations > 0 ? "Selected annotations (" + image.selectedAnnotations
                                + ")" : "Selected annotations (none: whole image)";
                    case ANNOTATIONS:
                        return "All annotations";
                    default:
                        return "Whole image";
                }
            }

            @Override
            public Region fromString(String s) {
                return Region.SELECTED;
            }
        });
        return box;
    }

    private static int pixelSizeRow(GridPane g, int row, ImageState image, TextField mpp) {
        if (image.pixelSize != null) {
            g.addRow(row, new Label("Pixel size"), new Label(image.pixelSize + " (from the image)"));
        } else {
            mpp.setPromptText("µm per pixel, e.g. 0.5");
            Label warn = new Label("This image has no pixel size: type it (or set it in the Image tab).");
            warn.setWrapText(true);
            warn.setMaxWidth(420);
            g.addRow(row, new Label("µm per pixel"), mpp);
            g.add(warn, 1, ++row);
        }
        return row + 1;
    }

    private static Double parseMpp(TextField field, ImageState image) {
        String t = field.getText() == null ? "" : field.getText().trim();
        if (t.isEmpty()) {
            if (image.pixelSize == null) {
                throw new IllegalArgumentException("This image has no pixel size: type its µm per pixel.");
            }
            return null;
        }
        try {
            return Double.parseDouble(t.replace(',', '.'));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("µm per pixel must be a number, e.g. 0.5; got '" + t + "'");
        }
    }

    private static String fmt(double v) {
        return v == Math.rint(v) ? String.valueOf((long) v) : String.format("%.3g", v);
    }

    private static String shorten(String s, int n) {
        return s.length() <= n ? s : s.substring(0, n - 3) + "...";
    }
}

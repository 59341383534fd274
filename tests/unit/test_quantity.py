"""Kubernetes quantities: exact parsing, refusal of anything ambiguous, canonical formatting."""

import pytest

from colonies_operator.jobs import quantity

MI = 1024**2


@pytest.mark.parametrize("value, millis", [
    ("500m", 500), ("0m", 0), ("2", 2000), ("0.5", 500), ("1.5", 1500), (".25", 250),
    ("2000m", 2000), (" 250m ", 250), (3, 3000), (0, 0), ("0.001", 1),
])
def test_cpu_is_read_as_whole_millicores(value, millis):
    assert quantity.parse_cpu(value) == millis


@pytest.mark.parametrize("value", [
    "abc", "", "-1", "-500m", "1.5m", "0.0005", "2 cores", "1e3", "500M", "1Gi", True, 0.5, None, [], -2, "٣",
])
def test_anything_else_is_not_a_cpu_quantity(value):
    with pytest.raises(quantity.QuantityError, match="cpu"):
        quantity.parse_cpu(value)


@pytest.mark.parametrize("value, size", [
    ("512Mi", 512 * MI), ("1Gi", 1024 * MI), ("1G", 10**9), ("1000M", 10**9), ("1024Ki", MI),
    ("123", 123), ("1Ti", 1024**4), ("1k", 1000), ("0Mi", 0), ("1.5Gi", 1536 * MI), (4096, 4096),
])
def test_memory_is_read_as_whole_bytes(value, size):
    assert quantity.parse_memory(value) == size


@pytest.mark.parametrize("value", ["1GB", "abc", "", "-1Mi", "-5", "1K", "1gi", "0.5", "1.5m", "Mi", True, 1.0, None, -1])
def test_anything_else_is_not_a_memory_quantity(value):
    with pytest.raises(quantity.QuantityError, match="memory"):
        quantity.parse_memory(value)


def test_the_memory_error_says_which_forms_are_accepted():
    with pytest.raises(quantity.QuantityError) as err:
        quantity.parse_memory("1GB")
    assert "'1GB'" in str(err.value)
    assert all(form in str(err.value) for form in ("Mi", "Gi", "G", "512Mi"))


def test_quantity_errors_are_value_errors():
    assert issubclass(quantity.QuantityError, ValueError)


@pytest.mark.parametrize("millis, text", [(500, "500m"), (0, "0m"), (2000, "2000m")])
def test_cpu_is_always_formatted_in_millicores(millis, text):
    assert quantity.format_cpu(millis) == text


@pytest.mark.parametrize("size, text", [
    (256 * MI, "256Mi"), (1024 * MI, "1024Mi"), (0, "0Mi"), (1536 * 1024, "1536Ki"), (1000 * 1024, "1000Ki"),
    (10**9, "1000000000"), (123, "123"),
])
def test_memory_is_formatted_in_the_largest_exact_unit_up_to_mebibytes(size, text):
    assert quantity.format_memory(size) == text
    assert quantity.parse_memory(text) == size


@pytest.mark.parametrize("format_", [quantity.format_cpu, quantity.format_memory])
def test_negative_amounts_cannot_be_formatted(format_):
    with pytest.raises(quantity.QuantityError):
        format_(-1)

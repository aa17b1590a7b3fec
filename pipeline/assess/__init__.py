"""Assessment: comparison with reference maps, accuracy and area estimates, change, drift and
the HTML report. Sits above mapping; imported only by the application layer.
"""

"""TemplateService: base job templates, their validation and their rendering."""
